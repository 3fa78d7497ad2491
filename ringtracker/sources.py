"""The git-tracked data files that ingest reads, and how to turn a version into records.

Each source becomes one git-history namespace. The converters here are also
what git-history calls (through `--import` and `--convert`), so the item
tables and the derived tables read every version the same way.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from .ids import agency_slug

REPORTED_COLUMNS = (
    "agency_name",
    "agency_type",
    "listed_as",
    "city",
    "state",
    "joined",
    "reported_on",
    "source_url",
    "evidence",
)

class VersionError(ValueError):
    """A version of a data file is empty, truncated or not in the expected format."""

@dataclass(frozen=True)
class Source:
    namespace: str  # git-history namespace and table name
    path: str  # data file, relative to the repository root
    converter: str  # function name in this module
    has_video_requests: bool

    @property
    def convert_expression(self) -> str:
        """The `--convert` code that git-history runs on each version of the file."""
        return f"ringtracker.sources.changed_records({self.converter!r}, content)"

    def records(self, content: bytes) -> list[dict]:
        return globals()[self.converter](content)

def reported_records(content: bytes) -> list[dict]:
    """Read the reported-partnerships CSV; add a stable `id` of name and state."""
    text = _decode(content)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REPORTED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise VersionError(
            f"CSV header lacks the columns {', '.join(missing)}; "
            f"expected {', '.join(REPORTED_COLUMNS)}"
        )
    records = []
    for line_number, row in enumerate(reader, start=2):
        if None in row:
            raise VersionError(f"CSV line {line_number} has more fields than the header")
        record = {key: (value.strip() or None) for key, value in row.items()}
        if not record["agency_name"] or not record["state"]:
            raise VersionError(
                f"CSV line {line_number} lacks agency_name or state: {row!r}"
            )
        record["id"] = agency_slug(record["agency_name"], record["state"])
        records.append(record)
    _require_records(records)
    return records

def map_records(content: bytes) -> list[dict]:
    """Read a snapshot of Ring's map written by the scraper (a JSON list of records)."""
    text = _decode(content)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as error:
        raise VersionError(f"invalid JSON ({error})") from None
    if not isinstance(records, list):
        raise VersionError(f"expected a JSON list of agencies, found {type(records).__name__}")
    for index, record in enumerate(records):
        if not isinstance(record, dict) or not record.get("id") or not record.get("name"):
            raise VersionError(f"record {index} lacks an id or a name: {record!r:.200}")
    _require_records(records)
    return records

# repr() of each record of the last version each converter returned, by id.
_previous_versions: dict[str, dict[str, str]] = {}


def changed_records(converter: str, content: bytes) -> list[dict]:
    """Convert a version, then drop the records equal to the previous version's.

    git-history hashes every record of every version to find the few that
    changed, which took most of a build. It stores nothing for an unchanged
    record, so leaving those out gives it the same tables in a fraction of the
    time. The first version a process converts is returned whole, and
    git-history compares it with what the database already holds.
    """
    records = globals()[converter](content)
    previous = _previous_versions.get(converter, {})
    # repr() tells 1, 1.0 and True apart, as git-history's JSON hash does and
    # `==` does not. Equal reprs mean equal JSON; a record whose keys merely
    # moved compares unequal here and git-history then finds no change.
    current = {record["id"]: repr(record) for record in records}
    _previous_versions[converter] = current
    return [record for record in records if previous.get(record["id"]) != current[record["id"]]]


def _decode(content: bytes) -> str:
    if not content.strip():
        raise VersionError("the file is empty")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise VersionError(f"the file is not UTF-8 ({error})") from None

def _require_records(records: list[dict]) -> None:
    # A version with no rows is a broken scrape, not Ring ending every
    # partnership, so it is skipped instead of producing a `left` event each.
    if not records:
        raise VersionError("the file contains no agencies")
    seen = set()
    for record in records:
        if record["id"] in seen:
            raise VersionError(f"duplicate id {record['id']!r}")
        seen.add(record["id"])

REPORTED = Source("reported", "data/reported-partnerships.csv", "reported_records", False)
RING_MAP = Source("ring_map", "data/agencies.json", "map_records", True)
SOURCES = (RING_MAP, REPORTED)

"""The git-tracked data files that ingest reads, and how to turn a version into records.

Each source becomes one git-history namespace. The converters here are also
what git-history calls (through `--import` and `--convert`), so the item
tables and the derived tables read every version the same way.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass

from .ids import agency_slug

log = logging.getLogger(__name__)

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


# The records of the last version each converter returned, by id.
_previous_versions: dict[str, dict[str, dict]] = {}


def changed_records(converter: str, content: bytes) -> list[dict]:
    """Convert a version, then drop the records equal to the previous version's.

    git-history hashes every record of every version to find the few that
    changed, which took most of a build. It stores nothing for an unchanged
    record, so leaving those out gives it the same tables in a fraction of the
    time. The first version a process converts is returned whole, and
    git-history compares it with what the database already holds.

    A version the converter rejects yields no records, so git-history lists
    its commit with no changes and goes on. The build's derive pass records
    such commits, with the reason, in `skipped_commits`.
    """
    try:
        records = globals()[converter](content)
    except VersionError as error:
        log.warning("No records taken from an unreadable version: %s", error)
        return []
    previous = _previous_versions.get(converter, {})
    _previous_versions[converter] = {record["id"]: record for record in records}
    return [record for record in records if not _same(record, previous.get(record["id"]))]


def _same(record: dict, previous: dict | None) -> bool:
    """Return whether git-history would give the two records the same hash."""
    if previous is None or record != previous:
        return False
    # `==` treats 1, 1.0 and True as equal, but git-history hashes their
    # JSON ("1", "1.0", "true"), so the types must match too. Inside lists
    # and objects, repr() distinguishes them.
    for key, value in record.items():
        other = previous[key]
        if type(value) is not type(other):
            return False
        if isinstance(value, (dict, list)) and value and repr(value) != repr(other):
            return False
    return True


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

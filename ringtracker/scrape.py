"""Run one scrape: fetch, parse, normalize, validate, write, and optionally commit.

Nothing is written unless every step succeeds, so on any ScrapeError the existing data
file keeps its bytes.
"""

import json
import logging
import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ringtracker import DEFAULT_MAP_URL, profiles
from ringtracker.errors import ScrapeError
from ringtracker.fetch import FetchOptions, fetch
from ringtracker.kml import parse
from ringtracker.normalize import normalize
from ringtracker.validate import validate
from ringtracker.write import read_records, write

log = logging.getLogger(__name__)

DEFAULT_URL = DEFAULT_MAP_URL
DEFAULT_OUTPUT = Path("data/agencies.json")
MAX_LISTED_CHANGES = 25


@dataclass(frozen=True)
class ScrapeConfig:
    url: str
    output: Path = DEFAULT_OUTPUT
    allow_shrink: bool = False
    commit: bool = False
    with_profiles: bool = False
    profiles_output: Path | None = None
    fetch_options: FetchOptions = field(default_factory=FetchOptions)
    profile_options: profiles.ProfileOptions = field(default_factory=profiles.ProfileOptions)


@dataclass(frozen=True)
class RecordDiff:
    added: list[dict]
    removed: list[dict]
    changed: list[tuple[dict, list[str]]]

    @property
    def summary(self) -> str:
        return f"+{len(self.added)}, -{len(self.removed)}, {len(self.changed)} changed"


@dataclass(frozen=True)
class ScrapeOutcome:
    records: list[dict]
    diff: RecordDiff
    file_changed: bool
    commit: str | None
    fetched_at: str


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def run(config: ScrapeConfig) -> ScrapeOutcome:
    """Scrape ``config.url`` into ``config.output``; raise ScrapeError on any failed step."""
    _check_url(config.url)
    fetched_at = utc_now()
    log.info("Fetching %s", config.url)
    data = fetch(config.url, config.fetch_options)
    placemarks = parse(data)
    result = normalize(placemarks)
    old_records = read_records(config.output)
    records = validate(result.records, old_records, allow_shrink=config.allow_shrink, problems=result.problems)

    file_changed = write(records, config.output)
    diff = diff_records(old_records or [], records)
    log.info(
        "Fetched %s at %s: %d placemarks, %d agencies (%s); %s %s",
        config.url,
        fetched_at,
        len(placemarks),
        len(records),
        diff.summary,
        config.output,
        "updated" if file_changed else "unchanged",
    )

    if config.with_profiles:
        _enrich_profiles(records, config)

    commit = None
    if config.commit:
        commit = commit_snapshot(config, records, fetched_at)
    return ScrapeOutcome(records=records, diff=diff, file_changed=file_changed, commit=commit, fetched_at=fetched_at)


def _check_url(url: str) -> None:
    # The URL ends up in a commit trailer, where a line break would forge other trailers.
    if not url or re.search(r"[\s\x00-\x1f\x7f]", url):
        raise ScrapeError(f"Invalid source URL {url!r}: it is empty or contains whitespace or control characters.")


def _enrich_profiles(records: list[dict], config: ScrapeConfig) -> None:
    path = config.profiles_output or config.output.with_name("profiles.json")
    try:
        profiles.update_profiles(records, path, config.profile_options)
    except Exception:
        # Profile pages are an optional extra with an unverified format; the agency
        # snapshot is already written and must not depend on them.
        log.exception("Profile enrichment failed; the agency snapshot is kept without it")


def diff_records(old: list[dict], new: list[dict]) -> RecordDiff:
    """Compare two snapshots by id and list added, removed and changed records."""
    old_by_id = {record.get("id"): record for record in old}
    new_by_id = {record["id"]: record for record in new}
    added = [new_by_id[key] for key in sorted(new_by_id.keys() - old_by_id.keys())]
    removed = [old_by_id[key] for key in sorted(old_by_id.keys() - new_by_id.keys(), key=str)]
    changed = []
    for key in sorted(new_by_id.keys() & old_by_id.keys()):
        before, after = old_by_id[key], new_by_id[key]
        fields = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
        if fields:
            changed.append((after, fields))
    return RecordDiff(added=added, removed=removed, changed=changed)


def build_commit_message(diff: RecordDiff, count: int, fetched_at: str, url: str) -> str:
    """Build the commit message: a count summary, the changed agencies, then git trailers."""
    lines = [f"Ring map: {count:,} agencies ({diff.summary})", ""]
    sections = (
        ("Added", [_describe(record) for record in diff.added]),
        ("Removed", [_describe(record) for record in diff.removed]),
        ("Changed", [f"{_describe(record)}: {', '.join(fields)}" for record, fields in diff.changed]),
    )
    for title, items in sections:
        if not items:
            continue
        lines.append(f"{title}:")
        lines.extend(f"- {item}" for item in items[:MAX_LISTED_CHANGES])
        if len(items) > MAX_LISTED_CHANGES:
            lines.append(f"- ... and {len(items) - MAX_LISTED_CHANGES} more")
        lines.append("")
    lines.append(f"Fetched-At: {fetched_at}")
    lines.append(f"Source-URL: {url}")
    return "\n".join(lines) + "\n"


def _describe(record: dict) -> str:
    return f"{record.get('name')} ({record.get('id')})"


def commit_snapshot(config: ScrapeConfig, records: list[dict], fetched_at: str) -> str | None:
    """Commit the data file (and profiles file) when git reports a change, and return the new commit hash.

    The commit uses the repository's configured user.name and user.email. Returns None
    and commits nothing when the files match the last commit.
    """
    output = config.output.resolve()
    root = Path(_git(output.parent, "rev-parse", "--show-toplevel").strip())
    paths = [output.relative_to(root).as_posix()]
    profiles_path = (config.profiles_output or config.output.with_name("profiles.json")).resolve()
    if config.with_profiles and profiles_path.exists():
        if not profiles_path.is_relative_to(root):
            raise ScrapeError(f"The profiles file {profiles_path} is outside the git repository {root}; put it inside to commit it.")
        paths.append(profiles_path.relative_to(root).as_posix())

    if not _git(root, "status", "--porcelain", "--", *paths).strip():
        log.info("No change in %s since the last commit; nothing to commit", ", ".join(paths))
        return None

    committed = _committed_records(root, paths[0])
    message = build_commit_message(diff_records(committed, records), len(records), fetched_at, config.url)
    _git(root, "add", "--", *paths)
    _git(root, "commit", "--quiet", "--file=-", "--", *paths, input_text=message)
    commit = _git(root, "rev-parse", "HEAD").strip()
    log.info("Committed %s: %s", commit[:12], message.splitlines()[0])
    return commit


def _committed_records(root: Path, path: str) -> list[dict]:
    try:
        text = _git(root, "show", f"HEAD:{path}")
    except ScrapeError:
        # No commit yet, or the file is new: every record counts as added.
        return []
    try:
        records = json.loads(text)
    except json.JSONDecodeError:
        log.warning("The committed %s is not valid JSON; the commit message lists every agency as added", path)
        return []
    return records if isinstance(records, list) else []


def _git(cwd: Path, *args: str, input_text: str | None = None) -> str:
    try:
        completed = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise ScrapeError("git is not installed or not on PATH; it is needed for --commit.") from None
    if completed.returncode != 0:
        raise ScrapeError(f"git {' '.join(args[:2])} failed in {cwd}: {completed.stderr.strip() or completed.stdout.strip()}")
    return completed.stdout

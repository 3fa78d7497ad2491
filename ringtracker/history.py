"""Derive join, leave, rejoin and change events from consecutive versions of a data file.

git-history records each version of an item that is present in a file. It
records nothing when an item disappears, so a partnership that ends would
leave no trace. This module compares each good version with the one before
it and keeps, for every agency, its state after the latest version.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .gitrepo import Commit
from .ids import agency_slug

log = logging.getLogger(__name__)


@dataclass
class AgencyState:
    """The state of one agency in one source after the versions processed so far."""

    record: dict
    present: bool
    first_seen: str
    last_seen: str
    commit_hash: str  # the commit that introduced the current version of the record
    ended_on: str | None = None
    times_rejoined: int = 0
    former_ids: list[str] = field(default_factory=list)


@dataclass
class SourceHistory:
    """The running state of one source, plus the rows derived since it was loaded."""

    source: str  # the data file's path, as the derived tables name it
    agencies: dict[str, AgencyState] = field(default_factory=dict)
    commits_processed: int = 0
    last_commit: str | None = None
    events: list[dict] = field(default_factory=list)
    snapshots: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def skip(self, commit: Commit, reason: str) -> None:
        log.warning("Skipping %s at commit %s: %s", self.source, commit.hash, reason)
        self.skipped.append(
            {
                "source": self.source,
                "commit_hash": commit.hash,
                "date": commit.date,
                "reason": reason,
            }
        )
        self._mark_processed(commit)

    def apply(self, commit: Commit, records: list[dict], count_video_requests: bool) -> None:
        """Compare one good version with the state so far and record what changed."""
        current = {record["id"]: record for record in records}
        # The first good version lists what was there when tracking began; its
        # agencies joined at some earlier, unknown time.
        baseline = not self.agencies
        self._follow_id_changes(current)
        added = changed = removed = 0

        for agency_id, record in current.items():
            state = self.agencies.get(agency_id)
            if state is None:
                self.agencies[agency_id] = AgencyState(
                    record, True, commit.date, commit.date, commit.hash
                )
                self._event(commit, agency_id, record, "joined", baseline=baseline)
                added += 1
                continue
            if not state.present:
                state.present = True
                state.ended_on = None
                state.times_rejoined += 1
                self._event(commit, agency_id, record, "rejoined")
                added += 1
            # Nearly every record is unchanged between two days; comparing the
            # dicts is far cheaper than building a field-by-field diff.
            changes = record_changes(state.record, record) if state.record != record else {}
            if changes:
                self._event(commit, agency_id, record, "changed", changes)
                state.record = record
                state.commit_hash = commit.hash
                changed += 1
            state.last_seen = commit.date

        for agency_id, state in self.agencies.items():
            if state.present and agency_id not in current:
                state.present = False
                state.ended_on = commit.date
                self._event(commit, agency_id, state.record, "left")
                removed += 1

        self.snapshots.append(
            {
                "source": self.source,
                "commit_hash": commit.hash,
                "date": commit.date,
                "agency_count": len(current),
                "added": added,
                "removed": removed,
                "changed": changed,
                "video_requests_total": (
                    total_video_requests(records) if count_video_requests else None
                ),
            }
        )
        self._mark_processed(commit)

    def _follow_id_changes(self, current: dict[str, dict]) -> None:
        """Carry an agency's state over when its id changes but its name and state do not.

        The map's ids are slugs of name and state until an agency gets a profile
        URL, then its UUID. Without this, the day Ring added profile URLs would
        read as every agency leaving and a new one joining.
        """
        vanished = {
            agency_slug(state.record.get("name") or "", state.record.get("state")): agency_id
            for agency_id, state in self.agencies.items()
            if state.present and agency_id not in current
        }
        for agency_id, record in current.items():
            if agency_id in self.agencies:
                continue
            old_id = vanished.pop(agency_slug(record.get("name") or "", record.get("state")), None)
            if old_id is not None:
                state = self.agencies.pop(old_id)
                state.former_ids.append(old_id)
                self.agencies[agency_id] = state

    def _mark_processed(self, commit: Commit) -> None:
        self.commits_processed += 1
        self.last_commit = commit.hash

    def _event(
        self,
        commit: Commit,
        agency_id: str,
        record: dict,
        event: str,
        changes: dict | None = None,
        baseline: bool = False,
    ) -> None:
        self.events.append(
            {
                # Built from what the event is, not from a counter, so that an
                # incremental build names events exactly as a full build does.
                # It starts with the UTC date, so that sorting by id is sorting by
                # time with no ties, which Datasette's paging needs.
                "id": "-".join(
                    [compact_date(commit.date), Path(self.source).stem, commit.hash[:12],
                     event, agency_id]
                ),
                "agency_id": agency_id,
                "source_agency_id": agency_id,
                "agency_name": record.get("name") or record.get("agency_name"),
                "state": record.get("state"),
                "source": self.source,
                "event": event,
                "date": commit.date,
                "commit_hash": commit.hash,
                "changes": json.dumps(changes, sort_keys=True) if changes else None,
                "baseline": int(baseline),
            }
        )


def compact_date(iso_date: str) -> str:
    """Turn 2024-01-05T09:00:00+00:00 into 20240105T090000Z."""
    return iso_date[:19].replace("-", "").replace(":", "") + "Z"


def record_changes(old: dict, new: dict) -> dict:
    """Return {field: [old, new]} for every field whose value differs."""
    changes = {}
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            changes[key] = [old.get(key), new.get(key)]
    return changes


def total_video_requests(records: list[dict]) -> int | None:
    counts = [r.get("video_requests") for r in records]
    counts = [c for c in counts if isinstance(c, int) and not isinstance(c, bool)]
    return sum(counts) if counts else None

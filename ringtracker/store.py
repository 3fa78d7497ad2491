"""Save and load the derived tables and the per-source state that incremental builds resume from."""

from __future__ import annotations

import json

import sqlite_utils

from .agencies import AGENCY_COLUMNS, CachedGeocoder
from .geocode import Location
from .history import AgencyState, SourceHistory

STATE_TABLE = "ingest_state"
PROGRESS_TABLE = "ingest_progress"
GEOCODE_TABLE = "geocode_cache"
META_TABLE = "ingest_meta"
POPULATIONS_TABLE = "state_populations"

EVENT_COLUMNS = {
    "id": str,
    "agency_id": str,
    "source_agency_id": str,
    "agency_name": str,
    "state": str,
    "source": str,
    "event": str,
    "date": str,
    "commit_hash": str,
    "changes": str,
    "baseline": int,
}
SNAPSHOT_COLUMNS = {
    "source": str,
    "commit_hash": str,
    "date": str,
    "agency_count": int,
    "added": int,
    "removed": int,
    "changed": int,
    "video_requests_total": int,
}
SKIPPED_COLUMNS = {"source": str, "commit_hash": str, "date": str, "reason": str}
POPULATION_COLUMNS = {
    "state": str,
    "population": int,
    "as_of": str,
    "source_url": str,
    "commit_hash": str,
}


# The cluster map reads a `popup` JSON column: the agency's name, where it
# is, its source, and a link to its timeline page.
AGENCIES_MAP_SQL = """
select
  id, name, agency_type, listed_as, city, county, state, status, joined, source_url,
  latitude, longitude,
  json_object(
    'title', name,
    'description',
      case when listed_as = 'place' then 'A place named as a Ring partner. ' else '' end
      || coalesce(coalesce(city, county) || ', ', '') || state
      || case when status = 'ended' then ' (no longer listed)' else '' end
      || ' | source: ' || coalesce(source_url, 'unknown'),
    'link', '/ring/agencies/' || id
  ) as popup
from agencies
where latitude is not null and longitude is not null
"""


def create_tables(db: sqlite_utils.Database) -> None:
    db["events"].create(EVENT_COLUMNS, pk="id", if_not_exists=True)
    for columns in (["agency_id"], ["date"], ["event"], ["state"], ["source", "source_agency_id"]):
        db["events"].create_index(columns, if_not_exists=True)
    db["snapshots"].create(SNAPSHOT_COLUMNS, pk=("source", "commit_hash"), if_not_exists=True)
    db["skipped_commits"].create(
        SKIPPED_COLUMNS, pk=("source", "commit_hash"), if_not_exists=True
    )
    db[STATE_TABLE].create(
        {
            "source": str,
            "agency_id": str,
            "record": str,
            "present": int,
            "first_seen": str,
            "last_seen": str,
            "commit_hash": str,
            "ended_on": str,
            "times_rejoined": int,
            "former_ids": str,
        },
        pk=("source", "agency_id"),
        if_not_exists=True,
    )
    db[PROGRESS_TABLE].create(
        {"source": str, "last_commit": str, "commits_processed": int},
        pk="source",
        if_not_exists=True,
    )


def load_history(db: sqlite_utils.Database, source: str) -> SourceHistory:
    history = SourceHistory(source)
    progress = list(db[PROGRESS_TABLE].rows_where("source = ?", [source]))
    if progress:
        history.last_commit = progress[0]["last_commit"]
        history.commits_processed = progress[0]["commits_processed"]
    for row in db[STATE_TABLE].rows_where("source = ?", [source]):
        history.agencies[row["agency_id"]] = AgencyState(
            record=json.loads(row["record"]),
            present=bool(row["present"]),
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
            commit_hash=row["commit_hash"],
            ended_on=row["ended_on"],
            times_rejoined=row["times_rejoined"],
            former_ids=json.loads(row["former_ids"]),
        )
    return history


def append_derived_rows(db: sqlite_utils.Database, history: SourceHistory) -> None:
    """Write the events, snapshots and skipped commits derived so far, and forget them.

    Called every few hundred commits, so that a long history's events (over
    400,000 in the five-year busy benchmark history) never sit in memory at once.
    """
    with db.conn:
        db["events"].insert_all(history.events)
        db["snapshots"].insert_all(history.snapshots)
        db["skipped_commits"].insert_all(history.skipped)
    history.events.clear()
    history.snapshots.clear()
    history.skipped.clear()


def save_history(db: sqlite_utils.Database, history: SourceHistory) -> None:
    """Append the rows derived in this build and replace the source's saved state."""
    append_derived_rows(db, history)
    with db.conn:
        db.execute(f"DELETE FROM {STATE_TABLE} WHERE source = ?", [history.source])
        db[STATE_TABLE].insert_all(
            {
                "source": history.source,
                "agency_id": agency_id,
                "record": json.dumps(state.record, sort_keys=True),
                "present": int(state.present),
                "first_seen": state.first_seen,
                "last_seen": state.last_seen,
                "commit_hash": state.commit_hash,
                "ended_on": state.ended_on,
                "times_rejoined": state.times_rejoined,
                "former_ids": json.dumps(state.former_ids),
            }
            for agency_id, state in sorted(history.agencies.items())
        )
        save_progress(db, history.source, history.last_commit, history.commits_processed)


def save_progress(db: sqlite_utils.Database, source: str, last_commit: str, processed: int) -> None:
    db[PROGRESS_TABLE].upsert(
        {"source": source, "last_commit": last_commit, "commits_processed": processed},
        pk="source",
    )


def write_populations(db: sqlite_utils.Database, rows: list[dict], commit_hash: str | None) -> None:
    """Replace the state_populations table; no rows (no file) leaves no table."""
    with db.conn:
        if db[POPULATIONS_TABLE].exists():
            db[POPULATIONS_TABLE].drop()
        if rows:
            db[POPULATIONS_TABLE].create(POPULATION_COLUMNS, pk="state")
            db[POPULATIONS_TABLE].insert_all(dict(row, commit_hash=commit_hash) for row in rows)


def index_latest_versions(db: sqlite_utils.Database, namespace: str) -> None:
    """Index git-history's version table for the look-up it starts every run with.

    git-history begins by finding the latest version and hash of every item,
    a scan of the whole version table: 0.6 s of a one-commit update of the
    five-year benchmark database, and 0.06 s with this covering index.
    """
    table = f"{namespace}_version"
    if db[table].exists():
        db[table].create_index(
            ["_item", "_version", "_item_full_hash"],
            index_name=f"{table}_latest",
            if_not_exists=True,
        )


def write_agencies(
    db: sqlite_utils.Database, rows: list[dict], id_map: dict[tuple[str, str], str]
) -> None:
    """Replace the agencies table and its search index, and point events at its rows."""
    with db.conn:
        if db["agencies"].exists():
            if db["agencies"].detect_fts():
                db["agencies"].disable_fts()
            db["agencies"].drop()
        db["agencies"].create(AGENCY_COLUMNS, pk="id", not_null={"name", "state"})
        db["agencies"].insert_all(rows)
        link_events(db, id_map)
    db["agencies"].enable_fts(["name", "city", "county", "state"], create_triggers=False)
    db.create_view("agencies_map", AGENCIES_MAP_SQL, replace=True)
    for columns in (["state"], ["agency_type"], ["listed_as"], ["status"], ["joined"],
                    ["geocode_source"], ["county"]):
        db["agencies"].create_index(columns, if_not_exists=True)
    db["snapshots"].create_index(["date"], if_not_exists=True)


def link_events(db: sqlite_utils.Database, id_map: dict[tuple[str, str], str]) -> None:
    """Point each event at the agencies row it belongs to.

    Only merged agencies have a row id other than their id in the source, so
    only those are rewritten, after undoing links a changed merge left behind.
    """
    db.execute("UPDATE events SET agency_id = source_agency_id WHERE agency_id != source_agency_id")
    db.conn.executemany(
        "UPDATE events SET agency_id = ? WHERE source = ? AND source_agency_id = ?",
        [
            (row_id, source, source_id)
            for (source, source_id), row_id in id_map.items()
            if row_id != source_id
        ],
    )


def load_geocoder(db: sqlite_utils.Database) -> CachedGeocoder:
    cached = {}
    if db[GEOCODE_TABLE].exists():
        for row in db[GEOCODE_TABLE].rows:
            key = (row.pop("city"), row.pop("state"), row.pop("agency_name"))
            cached[key] = Location(**row)
    return CachedGeocoder(cached)


def save_geocoder(db: sqlite_utils.Database, geocoder: CachedGeocoder) -> None:
    """Keep exactly the places this build used, so that the table matches a full build."""
    with db.conn:
        if db[GEOCODE_TABLE].exists():
            db[GEOCODE_TABLE].drop()
        db[GEOCODE_TABLE].create(
            {
                "city": str,
                "state": str,
                "agency_name": str,
                "latitude": float,
                "longitude": float,
                "county": str,
                "geocode_source": str,
                "quality_flag": str,
            },
            pk=("city", "state", "agency_name"),
        )
        db[GEOCODE_TABLE].insert_all(
            {
                "city": city,
                "state": state,
                "agency_name": agency_name,
                "latitude": location.latitude,
                "longitude": location.longitude,
                "county": location.county,
                "geocode_source": location.geocode_source,
                "quality_flag": location.quality_flag,
            }
            for (city, state, agency_name), location in sorted(geocoder.used.items())
        )


def read_fingerprint(db_path) -> str | None:
    db = sqlite_utils.Database(db_path)
    try:
        if not db[META_TABLE].exists():
            return None
        rows = list(db[META_TABLE].rows_where("key = 'code_fingerprint'"))
        return rows[0]["value"] if rows else None
    finally:
        db.close()


def write_fingerprint(db_path, fingerprint: str) -> None:
    db = sqlite_utils.Database(db_path)
    try:
        db[META_TABLE].upsert({"key": "code_fingerprint", "value": fingerprint}, pk="key")
        db.execute("PRAGMA journal_mode=DELETE")
    finally:
        db.close()


def read_progress(db_path) -> dict[str, tuple[str, int]]:
    """Return {source: (last commit, commits processed)} as saved by the last build."""
    db = sqlite_utils.Database(db_path)
    try:
        if not db[PROGRESS_TABLE].exists():
            return {}
        return {
            row["source"]: (row["last_commit"], row["commits_processed"])
            for row in db[PROGRESS_TABLE].rows
        }
    finally:
        db.close()

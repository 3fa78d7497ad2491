"""Build a small ring.db for the site tests, with the schema that ingest.py writes.

Every agency here is invented. The rows cover the cases the site must handle:
a name that carries a <script> payload, a row that names only a place, a row
without coordinates, an agency that left, one that left and rejoined, a
change event, and a join dated in the current UTC month so the "added this
month" figure is not zero.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import sqlite_utils

from ringtracker.agencies import AGENCY_COLUMNS
from ringtracker.history import compact_date
from ringtracker.store import (
    AGENCIES_MAP_SQL,
    EVENT_COLUMNS,
    POPULATION_COLUMNS,
    SKIPPED_COLUMNS,
    SNAPSHOT_COLUMNS,
)

XSS_NAME = "<script>window.__xss=1</script> Police Department"
MAP_SOURCE = "data/agencies.json"
REPORTED_SOURCE = "data/reported-partnerships.csv"
MAP_URL = "https://www.google.com/maps/d/kml?mid=1eYVDPh5itXq5acDT9b0BVeQwmESBa4cB"


# Commit hashes: a readable prefix padded to 40 hex digits.
COMMIT_1 = "a1" * 20
COMMIT_2 = "b2" * 20
COMMIT_3 = "c3" * 20
COMMIT_4 = "d4" * 20
COMMIT_REPORTED = "e5" * 20
COMMIT_SKIPPED = "f6" * 20

DATE_1 = "2020-03-02T06:17:03+00:00"
DATE_2 = "2020-07-15T06:17:03+00:00"
DATE_3 = "2021-01-10T06:17:03+00:00"
DATE_REPORTED = "2019-12-20T12:00:00+00:00"


def current_month_date() -> str:
    """Return a commit date inside the current UTC month, for the newest join."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return now.replace(day=1, hour=0, minute=30, second=0).isoformat()


def agency(**values) -> dict:
    row = {column: None for column in AGENCY_COLUMNS}
    row.update(values)
    return row


def map_agency(uuid: str, name: str, agency_type: str, city: str, county: str,
               state: str, latitude: float, longitude: float, joined: str,
               video_requests: int, **extra) -> dict:
    defaults = {
        "source_url": MAP_URL,
        "status": "active",
        "first_seen": DATE_1,
        "last_seen": current_month_date(),
        "times_rejoined": 0,
        "commit_hash": COMMIT_1,
    }
    return agency(
        id=uuid,
        name=name,
        agency_type=agency_type,
        listed_as="agency",
        city=city,
        county=county,
        state=state,
        address=f"{city}, {state}",
        latitude=latitude,
        longitude=longitude,
        geocode_source="source:point",
        joined=joined,
        video_requests=video_requests,
        profile_url=f"https://agency.ring.com/agencies/{uuid}",
        source=MAP_SOURCE,
        **{**defaults, **extra},
    )


def agency_rows() -> list[dict]:
    latest = current_month_date()
    return [
        map_agency("11111111-1111-4111-8111-111111111111", "Riverbend Police Department",
                   "police", "Riverbend", "Lake County", "OR", 44.05, -123.09,
                   "2019-05-14", 12, commit_hash=COMMIT_2),
        map_agency("22222222-2222-4222-8222-222222222222", "Cedar Hollow County Sheriff's Office",
                   "sheriff", "Cedar Hollow", "Cedar County", "OR", 45.52, -122.68,
                   "2019-08-01", 3),
        map_agency("33333333-3333-4333-8333-333333333333", "Maple Falls Fire Department",
                   "fire", "Maple Falls", "Whatcom County", "WA", 48.93, -122.08,
                   "2020-02-11", 0),
        map_agency("44444444-4444-4444-8444-444444444444", XSS_NAME,
                   "police", "Quartz Flats", "Quartz County", "TX", 31.55, -97.15,
                   "2020-06-30", 5, source_url="javascript:window.__xss=1"),
        map_agency("55555555-5555-4555-8555-555555555555", "Harbor Point Police Department",
                   "police", "Harbor Point", "Lake County", "OR", 43.99, -123.20,
                   "2019-11-05", 7, times_rejoined=1),
        map_agency("66666666-6666-4666-8666-666666666666", "Old Mill Police Department",
                   "police", "Old Mill", "Dale County", "AL", 31.40, -85.70,
                   "2019-03-03", None, status="ended", last_seen=DATE_2,
                   ended_on=DATE_3),
        map_agency("77777777-7777-4777-8777-777777777777", "Juniper Gap Police Department",
                   "police", "Juniper Gap", "Elm County", "TX", 30.27, -97.74,
                   latest[:10], 0, first_seen=latest, commit_hash=COMMIT_4),
        agency(
            id="stillwater-crossing-or",
            name="Stillwater Crossing",
            agency_type=None,
            listed_as="place",
            city="Stillwater Crossing",
            county="Lake County",
            state="OR",
            latitude=44.10,
            longitude=-123.00,
            geocode_source="gazetteer:city",
            reported_on="2019-12-06",
            evidence="The city page says the town partners with Ring's Neighbors app.",
            source=REPORTED_SOURCE,
            source_url="https://news.example.org/stillwater-crossing-ring",
            reported_source_url="https://news.example.org/stillwater-crossing-ring",
            status="reported",
            first_seen=DATE_REPORTED,
            last_seen=DATE_REPORTED,
            times_rejoined=0,
            commit_hash=COMMIT_REPORTED,
        ),
        agency(
            id="pine-ridge-police-department-wa",
            name="Pine Ridge Police Department",
            agency_type="police",
            listed_as="agency",
            city="Pine Ridge",
            state="WA",
            data_quality="unresolved_location",
            joined="2019-10",
            reported_on="2019-10-22",
            evidence="The department announced it joined the Neighbors portal in October.",
            source=REPORTED_SOURCE,
            source_url="https://news.example.org/pine-ridge-neighbors",
            reported_source_url="https://news.example.org/pine-ridge-neighbors",
            status="reported",
            first_seen=DATE_REPORTED,
            last_seen=DATE_REPORTED,
            times_rejoined=0,
            commit_hash=COMMIT_REPORTED,
        ),
    ]


def event_rows() -> list[dict]:
    latest = current_month_date()
    rows = []

    def add(agency_id, name, state, source, event, date, commit_hash, changes=None):
        rows.append({
            # Shaped like ingest's event ids: source, commit, event, agency.
            "id": "-".join([compact_date(date), Path(source).stem, commit_hash[:12], event,
                            agency_id]),
            "agency_id": agency_id,
            "source_agency_id": agency_id,
            "agency_name": name,
            "state": state,
            "source": source,
            "event": event,
            "date": date,
            "commit_hash": commit_hash,
            "changes": json.dumps(changes) if changes else None,
            "baseline": 0,
        })

    for row in agency_rows():
        if row["source"] == REPORTED_SOURCE:
            add(row["id"], row["name"], row["state"], REPORTED_SOURCE, "joined",
                DATE_REPORTED, COMMIT_REPORTED)
        elif row["first_seen"] == DATE_1:
            add(row["id"], row["name"], row["state"], MAP_SOURCE, "joined", DATE_1, COMMIT_1)
    riverbend = "11111111-1111-4111-8111-111111111111"
    add(riverbend, "Riverbend Police Department", "OR", MAP_SOURCE, "changed", DATE_2,
        COMMIT_2, {"video_requests": [4, 12]})
    harbor = "55555555-5555-4555-8555-555555555555"
    add(harbor, "Harbor Point Police Department", "OR", MAP_SOURCE, "left", DATE_2, COMMIT_2)
    add(harbor, "Harbor Point Police Department", "OR", MAP_SOURCE, "rejoined", DATE_3,
        COMMIT_3)
    old_mill = "66666666-6666-4666-8666-666666666666"
    add(old_mill, "Old Mill Police Department", "AL", MAP_SOURCE, "left", DATE_3, COMMIT_3)
    add("77777777-7777-4777-8777-777777777777", "Juniper Gap Police Department", "TX",
        MAP_SOURCE, "joined", latest, COMMIT_4)
    return rows


def snapshot_rows() -> list[dict]:
    latest = current_month_date()
    return [
        {"source": REPORTED_SOURCE, "commit_hash": COMMIT_REPORTED, "date": DATE_REPORTED,
         "agency_count": 2, "added": 2, "removed": 0, "changed": 0,
         "video_requests_total": None},
        {"source": MAP_SOURCE, "commit_hash": COMMIT_1, "date": DATE_1, "agency_count": 6,
         "added": 6, "removed": 0, "changed": 0, "video_requests_total": 20},
        {"source": MAP_SOURCE, "commit_hash": COMMIT_2, "date": DATE_2, "agency_count": 5,
         "added": 0, "removed": 1, "changed": 1, "video_requests_total": 27},
        {"source": MAP_SOURCE, "commit_hash": COMMIT_3, "date": DATE_3, "agency_count": 5,
         "added": 1, "removed": 1, "changed": 0, "video_requests_total": 27},
        {"source": MAP_SOURCE, "commit_hash": COMMIT_4, "date": latest, "agency_count": 6,
         "added": 1, "removed": 0, "changed": 0, "video_requests_total": 27},
    ]


def add_git_history_tables(db: sqlite_utils.Database, rows: list[dict]) -> None:
    """Add namespaces, commits, columns and per-source item tables as git-history 0.8 does.

    Each source gets a `<namespace>` item table, a `<namespace>_version` table
    (the columns that changed in each version), a `<namespace>_changed` table
    and a `<namespace>_version_detail` view. Only one version per item is
    recorded here, except Riverbend, which has two.
    """
    db["namespaces"].create({"id": int, "name": str}, pk="id")
    db["namespaces"].create_index(["name"], unique=True)
    db["commits"].create(
        {"id": int, "namespace": int, "hash": str, "commit_at": str},
        pk="id",
        foreign_keys=[("namespace", "namespaces", "id")],
    )
    db["commits"].create_index(["namespace", "hash"], unique=True)
    db["columns"].create(
        {"id": int, "namespace": int, "name": str},
        pk="id",
        foreign_keys=[("namespace", "namespaces", "id")],
    )
    db["columns"].create_index(["namespace", "name"], unique=True)

    map_rows = [r for r in rows if r["source"] == MAP_SOURCE]
    reported_rows = [r for r in rows if r["source"] == REPORTED_SOURCE]
    add_namespace(db, "ring_map", [COMMIT_1, COMMIT_2, COMMIT_3, COMMIT_4],
                  [map_record(r) for r in map_rows])
    add_namespace(db, "reported", [COMMIT_REPORTED], [reported_record(r) for r in reported_rows])


def map_record(row: dict) -> dict:
    return {
        "id": row["id"],
        "name": row["name"],
        "agency_type": row["agency_type"],
        "city": row["city"],
        "state": row["state"],
        "address": row["address"],
        "latitude": row["latitude"],
        "longitude": row["longitude"],
        "active_date": row["joined"],
        "video_requests": row["video_requests"],
        "profile_url": row["profile_url"],
    }


def reported_record(row: dict) -> dict:
    return {
        "agency_name": row["name"],
        "agency_type": row["agency_type"],
        "listed_as": row["listed_as"],
        "city": row["city"],
        "state": row["state"],
        "joined": row["joined"],
        "reported_on": row["reported_on"],
        "source_url": row["source_url"],
        "evidence": row["evidence"],
        "id": row["id"],
    }


def add_namespace(db: sqlite_utils.Database, namespace: str, hashes: list[str],
                  records: list[dict]) -> None:
    dates = {COMMIT_1: DATE_1, COMMIT_2: DATE_2, COMMIT_3: DATE_3, COMMIT_4: current_month_date(),
             COMMIT_REPORTED: DATE_REPORTED}
    namespace_id = db["namespaces"].insert({"name": namespace}).last_pk
    commit_ids = {
        commit_hash: db["commits"].insert(
            {"namespace": namespace_id, "hash": commit_hash, "commit_at": dates[commit_hash]}
        ).last_pk
        for commit_hash in hashes
    }
    column_ids = {
        name: db["columns"].insert({"namespace": namespace_id, "name": name}).last_pk
        for name in records[0]
    }
    item_columns = {"_id": int, "_item_id": str}
    item_columns.update({name: str for name in records[0]})
    item_columns["_commit"] = int
    for numeric in ("latitude", "longitude"):
        if numeric in item_columns:
            item_columns[numeric] = float
    if "video_requests" in item_columns:
        item_columns["video_requests"] = int
    db[namespace].create(item_columns, pk="_id",
                         foreign_keys=[("_commit", "commits", "id")])
    version_columns = {"_id": int, "_item": int, "_version": int, "_commit": int}
    version_columns.update({k: v for k, v in item_columns.items()
                            if k not in ("_id", "_item_id", "_commit")})
    version_columns["_item_full_hash"] = str
    version_table = f"{namespace}_version"
    db[version_table].create(
        version_columns,
        pk="_id",
        foreign_keys=[("_item", namespace, "_id"), ("_commit", "commits", "id")],
    )
    db[f"{namespace}_changed"].create(
        {"item_version": int, "column": int},
        pk=("item_version", "column"),
        foreign_keys=[("item_version", version_table, "_id"), ("column", "columns", "id")],
    )
    first_commit = commit_ids[hashes[0]]
    for number, record in enumerate(records, start=1):
        item_id = f"{number:040x}"
        item_pk = db[namespace].insert(
            dict(record, _item_id=item_id, _commit=first_commit)
        ).last_pk
        add_version(db, namespace, item_pk, 1, first_commit, record, column_ids)
        if record.get("name") == "Riverbend Police Department":
            add_version(db, namespace, item_pk, 2, commit_ids[COMMIT_2],
                        {"video_requests": record["video_requests"]}, column_ids)
    db.create_view(f"{namespace}_version_detail", f"""
        select
          commits.commit_at as _commit_at,
          commits.hash as _commit_hash,
          {namespace}_version.*,
          (
            select json_group_array(name) from columns
            where id in (
              select column from {namespace}_changed
              where item_version = {namespace}_version._id
            )
        ) as _changed_columns
        from {namespace}_version
          join commits on commits.id = {namespace}_version._commit
    """.strip())
    db[version_table].create_index(["_item"])


def add_version(db, namespace, item_pk, version, commit_id, values, column_ids) -> None:
    version_id = db[f"{namespace}_version"].insert(
        dict(values, _item=item_pk, _version=version, _commit=commit_id,
             _item_full_hash=f"{item_pk:08x}{version:032x}")
    ).last_pk
    db[f"{namespace}_changed"].insert_all(
        {"item_version": version_id, "column": column_ids[name]} for name in values
    )


def build_site_db(path: Path) -> Path:
    """Write the test database to `path` and return the path."""
    db = sqlite_utils.Database(path)
    rows = agency_rows()
    db["agencies"].create(AGENCY_COLUMNS, pk="id", not_null={"name", "state"})
    db["agencies"].insert_all(rows)
    db["agencies"].enable_fts(["name", "city", "county", "state"], create_triggers=False)
    db.create_view("agencies_map", AGENCIES_MAP_SQL)
    for columns in (["state"], ["agency_type"], ["listed_as"], ["status"], ["joined"],
                    ["geocode_source"], ["county"]):
        db["agencies"].create_index(columns)

    db["events"].create(EVENT_COLUMNS, pk="id")
    db["events"].insert_all(event_rows())
    for columns in (["agency_id"], ["date"], ["event"], ["state"]):
        db["events"].create_index(columns)

    db["snapshots"].create(SNAPSHOT_COLUMNS, pk=("source", "commit_hash"))
    db["snapshots"].insert_all(snapshot_rows())
    db["snapshots"].create_index(["date"])

    db["skipped_commits"].create(SKIPPED_COLUMNS, pk=("source", "commit_hash"))
    db["skipped_commits"].insert({
        "source": MAP_SOURCE,
        "commit_hash": COMMIT_SKIPPED,
        "date": "2020-05-01T06:17:03+00:00",
        "reason": "the file contains no agencies",
    })

    add_git_history_tables(db, rows)
    db.close()
    return path


# Invented populations for the per-million map. AL has none, to show a state without one.
POPULATIONS = [
    {"state": "OR", "population": 4_000_000, "as_of": "2020-04-01",
     "source_url": "https://stats.example.org/or"},
    {"state": "TX", "population": 2_000_000, "as_of": "2020-04-01",
     "source_url": "https://stats.example.org/tx"},
]


def add_state_populations(db_path: Path) -> None:
    """Add the table that ingest builds from data/state-populations.csv."""
    db = sqlite_utils.Database(db_path)
    db["state_populations"].create(POPULATION_COLUMNS, pk="state")
    db["state_populations"].insert_all(dict(row, commit_hash=COMMIT_4) for row in POPULATIONS)
    db.close()

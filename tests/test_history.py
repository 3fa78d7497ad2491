"""Events, snapshots, statuses and skipped commits derived from a map file's git history."""

import json

import pytest
import sqlite_utils

from ringtracker.build import build

MAP_PATH = "data/agencies.json"
URL_TRAILER = "\n\nSource-URL: http://127.0.0.1:9/map.kml"


def agency(agency_id, name, video_requests=None, city="Huntsville"):
    return {
        "active_date": "2020-01-15",
        "address": f"{city}, AL",
        "agency_type": "police",
        "city": city,
        "extra": {},
        "id": agency_id,
        "latitude": 34.73,
        "longitude": -86.59,
        "name": name,
        "profile_url": None,
        "state": "AL",
        "video_requests": video_requests,
    }


A = agency("a", "Alder Police Department", 5)
A_CHANGED = {**A, "video_requests": 7}
B = agency("b", "Birch Police Department", 2)
C = agency("c", "Cedar Police Department", None)


def snapshot(*records):
    return json.dumps(sorted(records, key=lambda r: r["id"]), indent=2, sort_keys=True) + "\n"


def commit_map(repo, records_or_text, date):
    content = records_or_text if isinstance(records_or_text, str) else snapshot(*records_or_text)
    return repo.commit_file(MAP_PATH, content, date, "Ring map" + URL_TRAILER)


HISTORY = [
    ((A,), "2024-01-01T10:00:00+00:00"),
    ((A, B), "2024-01-02T10:00:00+00:00"),
    ((A,), "2024-01-03T10:00:00+00:00"),
    ((A_CHANGED,), "2024-01-04T10:00:00+00:00"),
    ((A_CHANGED, B, C), "2024-01-05T09:00:00+00:00"),
    ((A_CHANGED, B), "2024-01-05T15:00:00+00:00"),
    ("", "2024-01-06T10:00:00+00:00"),
    ('[{"id": "a", "name": "Alder Pol', "2024-01-07T10:00:00+00:00"),
    ((A_CHANGED, B), "2024-01-08T10:00:00+02:00"),
]


@pytest.fixture
def map_history(make_repo):
    repo = make_repo(branch="scrapes")
    hashes = [commit_map(repo, content, date) for content, date in HISTORY]
    return repo, hashes


def table(db_path, name, order_by):
    return list(sqlite_utils.Database(db_path)[name].rows_where(order_by=order_by))


def test_events_exact(map_history, tmp_path):
    repo, h = map_history
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)

    events = [
        (row["event"], row["agency_id"], row["commit_hash"], row["date"], row["changes"])
        for row in table(db_path, "events", "date, event, agency_id")
    ]
    assert events == [
        ("joined", "a", h[0], "2024-01-01T10:00:00+00:00", None),
        ("joined", "b", h[1], "2024-01-02T10:00:00+00:00", None),
        ("left", "b", h[2], "2024-01-03T10:00:00+00:00", None),
        ("changed", "a", h[3], "2024-01-04T10:00:00+00:00", '{"video_requests": [5, 7]}'),
        ("joined", "c", h[4], "2024-01-05T09:00:00+00:00", None),
        ("rejoined", "b", h[4], "2024-01-05T09:00:00+00:00", None),
        ("left", "c", h[5], "2024-01-05T15:00:00+00:00", None),
    ]
    baseline = [(row["event"], row["agency_id"]) for row in table(db_path, "events", "id")
                if row["baseline"]]
    assert baseline == [("joined", "a")]
    ids = [row["id"] for row in table(db_path, "events", "id")]
    assert ids[0] == f"20240101T100000Z-agencies-{h[0][:12]}-joined-a"
    dates = [row["date"] for row in table(db_path, "events", "id")]
    assert dates == sorted(dates)
    names = {row["agency_id"]: row["agency_name"] for row in table(db_path, "events", "id")}
    assert names == {"a": "Alder Police Department", "b": "Birch Police Department",
                     "c": "Cedar Police Department"}


def test_snapshots_exact(map_history, tmp_path):
    repo, h = map_history
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)

    rows = [
        (r["commit_hash"], r["date"], r["agency_count"], r["added"], r["removed"],
         r["changed"], r["video_requests_total"])
        for r in table(db_path, "snapshots", "date")
    ]
    assert rows == [
        (h[0], "2024-01-01T10:00:00+00:00", 1, 1, 0, 0, 5),
        (h[1], "2024-01-02T10:00:00+00:00", 2, 1, 0, 0, 7),
        (h[2], "2024-01-03T10:00:00+00:00", 1, 0, 1, 0, 5),
        (h[3], "2024-01-04T10:00:00+00:00", 1, 0, 0, 1, 7),
        (h[4], "2024-01-05T09:00:00+00:00", 3, 2, 0, 0, 9),
        (h[5], "2024-01-05T15:00:00+00:00", 2, 0, 1, 0, 9),
        # Committed at 10:00 in UTC+2.
        (h[8], "2024-01-08T08:00:00+00:00", 2, 0, 0, 0, 9),
    ]


def test_skipped_commits_exact(map_history, tmp_path):
    repo, h = map_history
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)

    rows = [(r["commit_hash"], r["reason"]) for r in table(db_path, "skipped_commits", "date")]
    assert rows[0] == (h[6], "the file is empty")
    assert rows[1][0] == h[7]
    assert rows[1][1].startswith("invalid JSON")
    assert len(rows) == 2


def test_skipped_commits_add_no_versions(map_history, tmp_path):
    repo, h = map_history
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)

    db = sqlite_utils.Database(db_path)
    versions = list(db.query(
        "select ring_map._item_id, commits.hash from ring_map_version "
        "join ring_map on ring_map._id = ring_map_version._item "
        "join commits on commits.id = ring_map_version._commit order by ring_map_version._id"
    ))
    hashes = [row["hash"] for row in versions]
    # a first, b, a's change, c. The last commit repeats the one before the
    # two unreadable versions, so it adds nothing.
    assert hashes == [h[0], h[1], h[3], h[4]]
    assert h[7] in {row["hash"] for row in db["commits"].rows}


def test_agency_status_columns(map_history, tmp_path):
    repo, h = map_history
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)

    rows = {row["id"]: row for row in table(db_path, "agencies", "id")}
    status = {
        agency_id: (r["status"], r["first_seen"], r["last_seen"], r["ended_on"], r["times_rejoined"])
        for agency_id, r in rows.items()
    }
    assert status == {
        "a": ("active", "2024-01-01T10:00:00+00:00", "2024-01-08T08:00:00+00:00", None, 0),
        "b": ("active", "2024-01-02T10:00:00+00:00", "2024-01-08T08:00:00+00:00", None, 1),
        "c": ("ended", "2024-01-05T09:00:00+00:00", "2024-01-05T09:00:00+00:00",
              "2024-01-05T15:00:00+00:00", 0),
    }
    assert rows["a"]["video_requests"] == 7
    assert rows["a"]["commit_hash"] == h[3]
    assert rows["a"]["geocode_source"] == "source:point"
    assert rows["a"]["source_url"] == "http://127.0.0.1:9/map.kml"
    assert rows["a"]["source"] == MAP_PATH


def dump(db_path):
    """Every derived table, and git-history's versions keyed by commit hash, not row ids."""
    db = sqlite_utils.Database(db_path)
    tables = {}
    for name in ("agencies", "events", "snapshots", "skipped_commits", "ingest_state"):
        pks = db[name].pks
        tables[name] = [tuple(row.items()) for row in db[name].rows_where(order_by=", ".join(pks))]
    tables["ring_map_version"] = db.execute(
        "select ring_map.id, commits.hash, v._version, v.video_requests, v.name "
        "from ring_map_version v join ring_map on ring_map._id = v._item "
        "join commits on commits.id = v._commit order by ring_map.id, v._version"
    ).fetchall()
    tables["ring_map"] = db.execute(
        "select ring_map.id, ring_map.name, ring_map.video_requests, commits.hash "
        "from ring_map join commits on commits.id = ring_map._commit order by ring_map.id"
    ).fetchall()
    return tables


def test_incremental_equals_full(make_repo, tmp_path):
    repo = make_repo(branch="scrapes")
    for content, date in HISTORY[:4]:
        commit_map(repo, content, date)
    incremental_db = tmp_path / "incremental.db"
    build(repo.path, incremental_db)
    for content, date in HISTORY[4:]:
        commit_map(repo, content, date)
    build(repo.path, incremental_db)

    full_db = tmp_path / "full.db"
    build(repo.path, full_db)
    assert dump(incremental_db) == dump(full_db)


def test_incremental_reads_only_new_commits(map_history, tmp_path, caplog):
    repo, _ = map_history
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)
    commit_map(repo, (A_CHANGED,), "2024-01-09T10:00:00+00:00")
    caplog.clear()
    with caplog.at_level("INFO", logger="ringtracker.build"):
        build(repo.path, db_path)
    assert "data/agencies.json: 10 commits, 1 new" in caplog.text
    left = table(db_path, "events", "date desc")[0]
    assert (left["event"], left["agency_id"]) == ("left", "b")


def test_rewritten_history_rebuilds(map_history, tmp_path, caplog):
    repo, _ = map_history
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)
    repo.git("reset", "--quiet", "--hard", "HEAD~3")
    commit_map(repo, (A_CHANGED, C), "2024-01-09T10:00:00+00:00")
    with caplog.at_level("WARNING", logger="ringtracker.build"):
        build(repo.path, db_path)
    assert "rebuilding from scratch" in caplog.text

    full_db = tmp_path / "full.db"
    build(repo.path, full_db, full=True)
    assert dump(db_path) == dump(full_db)


def test_id_change_keeps_agency(make_repo, tmp_path):
    # The map switches an agency from a slug id to its profile UUID.
    repo = make_repo()
    slug_version = agency("alder-police-department-al", "Alder Police Department", 5)
    uuid = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    uuid_version = {
        **slug_version,
        "id": uuid,
        "profile_url": f"https://agency.ring.com/agencies/{uuid}",
    }
    first = commit_map(repo, (slug_version, B), "2024-02-01T10:00:00+00:00")
    second = commit_map(repo, (uuid_version, B), "2024-02-02T10:00:00+00:00")
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)

    events = [
        (row["event"], row["agency_id"], row["commit_hash"])
        for row in table(db_path, "events", "date, event, agency_id")
    ]
    assert events == [
        ("joined", uuid, first),
        ("joined", "b", first),
        ("changed", uuid, second),
    ]
    changed = table(db_path, "events", "date desc")[0]
    assert json.loads(changed["changes"]) == {
        "id": ["alder-police-department-al", uuid],
        "profile_url": [None, f"https://agency.ring.com/agencies/{uuid}"],
    }
    rows = {row["id"]: row for row in table(db_path, "agencies", "id")}
    assert sorted(rows) == sorted(["b", uuid])
    assert rows[uuid]["status"] == "active"
    assert rows[uuid]["first_seen"] == "2024-02-01T10:00:00+00:00"


def test_batched_writes_match_single_batch(map_history, tmp_path, monkeypatch):
    # Derived rows are written every PROGRESS_EVERY commits; writing them in
    # batches of two must give the same database as writing them at the end.
    repo, _ = map_history
    single = tmp_path / "single.db"
    build(repo.path, single)
    monkeypatch.setattr("ringtracker.build.PROGRESS_EVERY", 2)
    batched = tmp_path / "batched.db"
    build(repo.path, batched)
    assert dump(batched) == dump(single)

"""ingest.py on throwaway git repositories: exact agencies rows, shallow clones, atomic replace."""

import json
import os
import stat
import subprocess
import sys

import pytest
import sqlite_utils

from ringtracker.build import BuildError, build
from tests.conftest import PROJECT_ROOT

HEADER = "agency_name,agency_type,listed_as,city,state,joined,reported_on,source_url,evidence\n"
ROW_A = (
    "Lakeview Police Department,police,agency,Huntsville,AL,2019-06,2019-12-06,"
    "https://news.example.org/a,Lakeview police joined the Neighbors portal.\n"
)
ROW_B = (
    "Pinecrest County Sheriff's Office,sheriff,agency,Madison,AL,,2020-01-02,"
    "https://news.example.org/b,Sheriff's office announced the partnership.\n"
)
ROW_C = "Riverton,,place,Riverton,ZZ,,,https://news.example.org/c,The town is a Ring partner.\n"
ROW_A_EDITED = ROW_A.replace("joined the Neighbors portal", "joined Ring's portal")
CSV_PATH = "data/reported-partnerships.csv"


@pytest.fixture
def reported_repo(make_repo):
    repo = make_repo(branch="trunk")
    hashes = [
        repo.commit_file(CSV_PATH, HEADER + ROW_A + ROW_B, "2024-03-01T12:00:00+00:00"),
        repo.commit_file(CSV_PATH, HEADER + ROW_A + ROW_B + ROW_C, "2024-03-02T12:00:00+02:00"),
        repo.commit_file(CSV_PATH, HEADER + ROW_A_EDITED + ROW_B + ROW_C, "2024-03-03T12:00:00+00:00"),
    ]
    return repo, hashes


def agencies(db_path):
    return {row["id"]: row for row in sqlite_utils.Database(db_path)["agencies"].rows}


def test_agencies_rows_exact(reported_repo, tmp_path):
    repo, hashes = reported_repo
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)

    rows = agencies(db_path)
    assert sorted(rows) == [
        "lakeview-police-department-al",
        "pinecrest-county-sheriffs-office-al",
        "riverton-zz",
    ]
    lakeview = rows["lakeview-police-department-al"]
    assert lakeview["name"] == "Lakeview Police Department"
    assert lakeview["agency_type"] == "police"
    assert lakeview["listed_as"] == "agency"
    assert lakeview["city"] == "Huntsville"
    assert lakeview["state"] == "AL"
    assert lakeview["joined"] == "2019-06"
    assert lakeview["evidence"] == "Lakeview police joined Ring's portal."
    assert lakeview["source"] == CSV_PATH
    assert lakeview["source_url"] == "https://news.example.org/a"
    assert lakeview["reported_source_url"] == "https://news.example.org/a"
    assert lakeview["first_seen"] == "2024-03-01T12:00:00+00:00"
    assert lakeview["last_seen"] == "2024-03-03T12:00:00+00:00"
    assert lakeview["commit_hash"] == hashes[2]
    assert lakeview["status"] == "reported"
    assert lakeview["geocode_source"] == "gazetteer:city"
    assert lakeview["latitude"] == pytest.approx(34.73, abs=0.3)
    assert lakeview["longitude"] == pytest.approx(-86.59, abs=0.3)

    sheriff = rows["pinecrest-county-sheriffs-office-al"]
    assert sheriff["joined"] is None
    assert sheriff["commit_hash"] == hashes[0]

    place = rows["riverton-zz"]
    assert place["listed_as"] == "place"
    assert place["agency_type"] is None
    # Committed at 12:00 in UTC+2, so 10:00 UTC.
    assert place["first_seen"] == "2024-03-02T10:00:00+00:00"
    assert place["latitude"] is None
    assert place["geocode_source"] is None
    assert place["data_quality"] == "unresolved_location"


def test_agencies_column_types(reported_repo, tmp_path):
    repo, _ = reported_repo
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)
    db = sqlite_utils.Database(db_path)

    types = {column.name: column.type for column in db["agencies"].columns}
    assert types["latitude"] == "REAL"
    assert types["times_rejoined"] == "INTEGER"
    stored = db.execute(
        "select typeof(latitude), typeof(joined) from agencies where id = 'pinecrest-county-sheriffs-office-al'"
    ).fetchone()
    assert stored == ("real", "null")
    empty_strings = db.execute(
        "select count(*) from agencies where joined = '' or city = '' or agency_type = ''"
    ).fetchone()[0]
    assert empty_strings == 0


def test_git_history_tables_on_branch(reported_repo, tmp_path):
    repo, hashes = reported_repo
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)
    db = sqlite_utils.Database(db_path)

    assert [row["hash"] for row in db["commits"].rows_where(order_by="id")] == hashes
    versions = db.execute(
        "select reported.id, count(*) from reported_version "
        "join reported on reported._id = reported_version._item group by reported.id order by reported.id"
    ).fetchall()
    assert versions == [
        ("lakeview-police-department-al", 2),
        ("pinecrest-county-sheriffs-office-al", 1),
        ("riverton-zz", 1),
    ]


def test_search_and_facet_indexes(reported_repo, tmp_path):
    repo, _ = reported_repo
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)
    db = sqlite_utils.Database(db_path)

    found = [row["id"] for row in db["agencies"].search("Huntsville")]
    assert found == ["lakeview-police-department-al"]
    indexed = {tuple(index.columns) for index in db["agencies"].indexes}
    for column in ("state", "agency_type", "listed_as", "status"):
        assert (column,) in indexed


def test_shallow_clone_rejected(reported_repo, tmp_path):
    repo, _ = reported_repo
    shallow = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", "--branch", "trunk",
         f"file://{repo.path}", str(shallow)],
        check=True,
    )
    db_path = tmp_path / "ring.db"
    with pytest.raises(BuildError, match="git fetch --unshallow"):
        build(shallow, db_path)
    assert not db_path.exists()


def test_failed_build_keeps_previous_database(reported_repo, tmp_path):
    repo, _ = reported_repo
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)
    before = db_path.read_bytes()

    # git-history needs the file in the working tree; the new commit is
    # read and derived first, so the failure comes mid-build.
    repo.commit_file(CSV_PATH, HEADER + ROW_A, "2024-03-04T12:00:00+00:00")
    (repo.path / CSV_PATH).unlink()
    with pytest.raises(BuildError, match="missing from the working tree"):
        build(repo.path, db_path)

    assert db_path.read_bytes() == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".ring-")]
    assert leftovers == []


def test_database_gets_umask_permissions(reported_repo, tmp_path):
    repo, _ = reported_repo
    db_path = tmp_path / "ring.db"
    previous = os.umask(0o027)
    try:
        build(repo.path, db_path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o640


def test_version_tables_indexed_for_resume(reported_repo, tmp_path):
    repo, _ = reported_repo
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)
    indexes = {index.name: index.columns for index in sqlite_utils.Database(db_path)["reported_version"].indexes}
    assert indexes["reported_version_latest"] == ["_item", "_version", "_item_full_hash"]


def test_ingest_cli(reported_repo, tmp_path):
    repo, _ = reported_repo
    db_path = tmp_path / "out" / "ring.db"
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "ingest.py"), "--repo", str(repo.path),
         "--db", str(db_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Built" in result.stderr
    assert len(agencies(db_path)) == 3


def test_ingest_cli_not_a_repository(tmp_path):
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "ingest.py"), "--repo", str(tmp_path),
         "--db", str(tmp_path / "ring.db")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "is not a git repository" in result.stderr


def test_map_and_report_merge(reported_repo, tmp_path):
    repo, hashes = reported_repo
    map_record = {
        "active_date": "2019-05-03", "address": "Huntsville, AL", "agency_type": "police",
        "city": "Huntsville", "extra": {}, "id": "0f8e1c2a-1111-4222-8333-944455556666",
        "latitude": 34.7304, "longitude": -86.5861, "name": "Lakeview Police Department",
        "profile_url": "https://agency.ring.com/agencies/0f8e1c2a-1111-4222-8333-944455556666",
        "state": "AL", "video_requests": None,
    }
    map_hash = repo.commit_file(
        "data/agencies.json", json.dumps([map_record]), "2024-03-05T12:00:00+00:00",
        "Ring map: 1 agencies\n\nSource-URL: http://127.0.0.1:9/map.kml",
    )
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)

    rows = agencies(db_path)
    assert "lakeview-police-department-al" not in rows
    merged = rows["0f8e1c2a-1111-4222-8333-944455556666"]
    assert merged["source"] == "data/agencies.json, data/reported-partnerships.csv"
    assert merged["source_url"] == "http://127.0.0.1:9/map.kml"
    assert merged["reported_source_url"] == "https://news.example.org/a"
    assert merged["joined"] == "2019-05-03"
    assert merged["geocode_source"] == "source:point"
    assert merged["first_seen"] == "2024-03-01T12:00:00+00:00"
    assert merged["commit_hash"] == map_hash

    db = sqlite_utils.Database(db_path)
    linked = db.execute(
        "select source, event from events where agency_id = ? order by date, source",
        [merged["id"]],
    ).fetchall()
    assert linked == [
        ("data/reported-partnerships.csv", "joined"),
        ("data/reported-partnerships.csv", "changed"),
        ("data/agencies.json", "joined"),
    ]

"""From a map served on 127.0.0.1 to the agencies page: scrape, commit, ingest, serve."""

import json
import shutil

import pytest
import sqlite_utils
import yaml
from datasette.app import Datasette

from ringtracker.build import build
from tests.conftest import PROJECT_ROOT
from tests.helpers_scrape import (  # noqa: F401 (fixtures)
    KML_TYPE,
    clean_env,
    git,
    httpserver,
    loopback_server,
    make_git_repo,
    read_capture,
    run_scrape,
)

SETTINGS = {
    "sql_time_limit_ms": 1000,
    "max_returned_rows": 1000,
    "facet_time_limit_ms": 200,
    "suggest_facets": False,
}


@pytest.fixture
def tracker_repo(tmp_path):
    """A repository holding the shipped reported partnerships, as a fork would."""
    repo = make_git_repo(tmp_path / "tracker")
    (repo / "data").mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "data" / "reported-partnerships.csv", repo / "data")
    git(repo, "add", "data")
    git(repo, "commit", "--quiet", "-m", "Add reported partnerships")
    return repo


def datasette_for(db_path):
    metadata = yaml.safe_load((PROJECT_ROOT / "metadata.yml").read_text())
    return Datasette(
        [str(db_path)],
        metadata=metadata,
        template_dir=str(PROJECT_ROOT / "templates"),
        plugins_dir=str(PROJECT_ROOT / "plugins"),
        settings=SETTINGS,
    )


@pytest.mark.asyncio
async def test_scraped_agencies_reach_site(tracker_repo, httpserver, tmp_path):
    httpserver.expect_request("/map.kml").respond_with_data(
        read_capture("map-2021.kml"), content_type=KML_TYPE
    )
    url = httpserver.url_for("/map.kml")

    result = run_scrape(tracker_repo, "--url", url, "--commit", env=clean_env())
    assert result.returncode == 0, result.stderr
    message = git(tracker_repo, "log", "-1", "--format=%B")
    assert f"Source-URL: {url}" in message

    records = json.loads((tracker_repo / "data" / "agencies.json").read_text())
    db_path = tmp_path / "ring.db"
    build(tracker_repo, db_path)

    db = sqlite_utils.Database(db_path)
    for record in records:
        row = db["agencies"].get(record["id"])
        assert row["name"] == record["name"]
        assert row["source"].startswith("data/agencies.json")
        assert row["source_url"] == url
        assert row["status"] == "active"
    reported = db.execute(
        "select count(*) from agencies where source = 'data/reported-partnerships.csv'"
    ).fetchone()[0]
    assert reported == 202

    lakeview = next(r for r in records if r["name"] == "Lakeview Police Department")
    datasette = datasette_for(db_path)
    response = await datasette.client.get("/ring/agencies?_search=Lakeview")
    assert response.status_code == 200
    assert "Lakeview Police Department" in response.text
    response = await datasette.client.get(f"/ring/agencies/{lakeview['id']}.json?_shape=array")
    assert response.status_code == 200
    assert response.json()[0]["source_url"] == url


def test_rejected_scrape_changes_nothing(tracker_repo, httpserver, tmp_path):
    httpserver.expect_request("/map.kml").respond_with_data(
        read_capture("map-2021.kml"), content_type=KML_TYPE
    )
    assert run_scrape(
        tracker_repo, "--url", httpserver.url_for("/map.kml"), "--commit", env=clean_env()
    ).returncode == 0
    db_path = tmp_path / "ring.db"
    build(tracker_repo, db_path)
    data_before = (tracker_repo / "data" / "agencies.json").read_bytes()
    db_before = db_path.read_bytes()
    head_before = git(tracker_repo, "rev-parse", "HEAD")

    httpserver.expect_request("/empty.kml").respond_with_data(b"", content_type=KML_TYPE)
    result = run_scrape(
        tracker_repo, "--url", httpserver.url_for("/empty.kml"), "--commit", env=clean_env()
    )
    assert result.returncode != 0
    build(tracker_repo, db_path)

    assert (tracker_repo / "data" / "agencies.json").read_bytes() == data_before
    assert git(tracker_repo, "rev-parse", "HEAD") == head_before
    assert db_path.read_bytes() == db_before


@pytest.fixture(scope="module")
def shipped_db(tmp_path_factory):
    """ring.db built from the reported partnerships this repository ships."""
    root = tmp_path_factory.mktemp("shipped")
    repo = make_git_repo(root / "tracker")
    (repo / "data").mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "data" / "reported-partnerships.csv", repo / "data")
    git(repo, "add", "data")
    git(repo, "-c", "user.name=Test Runner", "-c", "user.email=test@example.invalid",
        "commit", "--quiet", "-m", "Add reported partnerships")
    db_path = root / "ring.db"
    build(repo, db_path)
    return db_path


@pytest.mark.asyncio
@pytest.mark.parametrize("table", ["agencies", "events", "agencies_map"])
async def test_paging_shipped_data(shipped_db, table):
    # Many rows share a join date or none; a default sort on such a column
    # made Datasette 0.65 repeat rows across pages and skip others.
    datasette = datasette_for(shipped_db)
    total = sqlite_utils.Database(shipped_db)[table].count
    seen = []
    path = f"/ring/{table}.json?_size=50&_shape=objects"
    while path:
        data = (await datasette.client.get(path)).json()
        seen += [row["id"] for row in data["rows"]]
        path = data["next_url"] and data["next_url"].split("localhost", 1)[1]
    assert total >= 190
    assert len(seen) == total
    assert len(set(seen)) == total

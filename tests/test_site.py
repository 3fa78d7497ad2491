"""Test the Datasette site (metadata.yml, plugins/, templates/) in process on a small database."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import yaml
from datasette.app import Datasette

from tests.site_db import POPULATIONS, REPORTED_SOURCE, XSS_NAME, add_state_populations, build_site_db

ROOT = Path(__file__).resolve().parent.parent
XSS_ID = "44444444-4444-4444-8444-444444444444"
SETTINGS = {
    "sql_time_limit_ms": 1000,
    "max_returned_rows": 1000,
    "facet_time_limit_ms": 200,
    "suggest_facets": False,
}
ATOM = "{http://www.w3.org/2005/Atom}"


def load_metadata() -> dict:
    with open(ROOT / "metadata.yml", encoding="utf-8") as metadata:
        return yaml.safe_load(metadata)


@pytest.fixture(scope="module")
def db_path(tmp_path_factory) -> Path:
    return build_site_db(tmp_path_factory.mktemp("site") / "ring.db")


def site(path: Path, metadata: dict | None = None) -> Datasette:
    """Serve `path` as the site does: immutable, with the project's metadata, plugins and templates."""
    return Datasette(
        [],
        immutables=[str(path)],
        metadata=metadata or load_metadata(),
        template_dir=str(ROOT / "templates"),
        plugins_dir=str(ROOT / "plugins"),
        settings=SETTINGS,
    )


async def started_site(path: Path, metadata: dict | None = None) -> Datasette:
    datasette = site(path, metadata)
    await datasette.invoke_startup()
    return datasette


@pytest_asyncio.fixture
async def ds(db_path):
    return await started_site(db_path)


# Invented rows for cases the shared test database lacks. Nevada has one agency,
# with no join date and a source that is not a web URL. Pennsylvania has one,
# named after a state, with a year-only join date and withdrawn from the data.
EXTRA_AGENCIES = [
    {"id": "sagebrush-flats-police-department-nv", "name": "Sagebrush Flats Police Department",
     "agency_type": "police", "listed_as": "agency", "city": "Sagebrush Flats", "state": "NV",
     "reported_on": "2020-02-02", "source": REPORTED_SOURCE,
     "source_url": "javascript:window.__xss=1", "reported_source_url": "javascript:window.__xss=1",
     "status": "reported", "first_seen": "2020-03-01T00:00:00+00:00",
     "last_seen": "2020-03-01T00:00:00+00:00", "times_rejoined": 0},
    {"id": "fort-washington-police-department-pa", "name": "Fort Washington Police Department",
     "agency_type": "police", "listed_as": "agency", "city": "Fort Washington", "state": "PA",
     "joined": "2019", "reported_on": "2019-09-09", "source": REPORTED_SOURCE,
     "source_url": "https://news.example.org/fort-washington",
     "reported_source_url": "https://news.example.org/fort-washington",
     "status": "withdrawn", "first_seen": "2019-12-20T12:00:00+00:00",
     "last_seen": "2019-12-20T12:00:00+00:00", "ended_on": "2020-06-01T00:00:00+00:00",
     "times_rejoined": 0},
]


@pytest.fixture(scope="module")
def extra_db_path(db_path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("site-extra") / "ring.db"
    shutil.copy(db_path, path)
    with sqlite3.connect(path) as conn:
        for row in EXTRA_AGENCIES:
            columns = ", ".join(row)
            placeholders = ", ".join(f":{name}" for name in row)
            conn.execute(f"insert into agencies ({columns}) values ({placeholders})", row)
        conn.execute("insert into agencies_fts (agencies_fts) values ('rebuild')")
    return path


@pytest_asyncio.fixture
async def extra_ds(extra_db_path):
    return await started_site(extra_db_path)


def collapse_spaces(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def query_one(db_path: Path, sql: str, params=()) -> object:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql, params).fetchone()[0]


# Home page


@pytest.mark.asyncio
async def test_home_figures_match_database(ds, db_path):
    response = await ds.client.get("/")
    assert response.status_code == 200
    page = response.text
    active = query_one(db_path, "select count(*) from agencies where status = 'active'")
    reported = query_one(db_path, "select count(*) from agencies where status = 'reported'")
    states = query_one(
        db_path,
        "select count(distinct state) from agencies where status in ('active', 'reported')",
    )
    month = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m")
    added = query_one(
        db_path,
        "select count(*) from events where event = 'joined' and source = 'data/agencies.json'"
        " and substr(date, 1, 7) = ?",
        [month],
    )
    last_updated = query_one(db_path, "select max(date) from snapshots")
    assert f"<strong>{active}</strong> agencies on Ring's map in the latest snapshot" in page
    assert reported == 2
    assert f"<strong>{reported}</strong> partnerships known only from public reporting" in page
    assert f"<strong>{states}</strong> states with a listed or reported agency" in page
    assert added == 1
    assert f"<strong>{added}</strong> agencies added to Ring's map in" in page
    assert f'<time datetime="{last_updated}">{last_updated[:10]}</time>' in page
    assert "<strong>27</strong> video requests" in page


@pytest.mark.asyncio
async def test_home_lists_recent_events_and_links(ds):
    page = (await ds.client.get("/")).text
    assert "Juniper Gap Police Department" in page
    assert "video_requests" in page  # the changed event names its field
    for link in ('href="/ring/agencies"', 'href="/search"', "/ring/new_joins_feed.atom",
                 'href="/ring/agencies.json', "/ring?sql=", "/about", "/-/ring/charts/monthly-joins.svg"):
        assert link in page or link.replace('href="', 'action="') in page, link


@pytest.mark.asyncio
async def test_home_escapes_script_name(ds):
    page = (await ds.client.get("/")).text
    assert XSS_NAME not in page
    assert html.escape(XSS_NAME, quote=False) in page


# Tables, facets, search, map


@pytest.mark.asyncio
async def test_state_facet_json(ds):
    response = await ds.client.get("/ring/agencies.json?_facet=state")
    assert response.status_code == 200
    facet = response.json()["facet_results"]["state"]
    counts = {item["value"]: item["count"] for item in facet["results"]}
    assert counts == {"OR": 4, "TX": 2, "WA": 2, "AL": 1}


@pytest.mark.asyncio
async def test_agencies_default_facets(ds):
    response = await ds.client.get("/ring/agencies.json")
    data = response.json()
    assert set(data["facet_results"]) >= {
        "state", "agency_type", "listed_as", "status", "geocode_source"
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("table", ["agencies", "events", "snapshots", "agencies_map"])
async def test_paging_returns_every_row_once(ds, db_path, table):
    # Datasette 0.65 pages by the sort column plus the primary key only after
    # the first page, so a default sort with ties loses and repeats rows.
    total = query_one(db_path, f"select count(*) from {table}")
    seen = []
    path = f"/ring/{table}.json?_size=2&_shape=objects"
    while path:
        data = (await ds.client.get(path)).json()
        seen += [json.dumps(row, sort_keys=True) for row in data["rows"]]
        next_url = urlsplit(data["next_url"] or "")
        path = f"{next_url.path}?{next_url.query}" if data["next_url"] else None
    assert len(seen) == total
    assert len(set(seen)) == total


@pytest.mark.asyncio
async def test_events_newest_first(ds):
    rows = (await ds.client.get("/ring/events.json?_shape=array")).json()
    dates = [row["date"] for row in rows]
    assert dates == sorted(dates, reverse=True)


@pytest.mark.asyncio
async def test_table_search_uses_fts(ds):
    response = await ds.client.get("/ring/agencies.json?_search=maple&_shape=array")
    assert response.status_code == 200
    assert [row["name"] for row in response.json()] == ["Maple Falls Fire Department"]


@pytest.mark.asyncio
async def test_agencies_page_has_cluster_map(ds):
    page = (await ds.client.get("/ring/agencies")).text
    assert "datasette-cluster-map.js" in page
    assert 'window.DATASETTE_CLUSTER_MAP_LATITUDE_COLUMN = "latitude"' in page
    assert 'window.DATASETTE_CLUSTER_MAP_LONGITUDE_COLUMN = "longitude"' in page


@pytest.mark.asyncio
async def test_table_page_escapes_script_name(ds):
    page = (await ds.client.get("/ring/agencies")).text
    assert XSS_NAME not in page
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt; Police Department" in page


@pytest.mark.asyncio
async def test_map_popup_data_is_plain_json(ds):
    # The cluster map builds each popup with document.createTextNode from this
    # JSON, so the name must arrive as data, not as markup.
    response = await ds.client.get(
        "/ring/agencies.json?_shape=objects&_col=name&_col=latitude&_col=longitude"
        "&_size=max&_labels=on"
    )
    rows = response.json()["rows"]
    names = [row["name"] for row in rows]
    assert XSS_NAME in names
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.asyncio
async def test_source_links_only_for_web_urls(ds):
    page = (await ds.client.get("/ring/agencies")).text
    assert 'href="javascript:' not in page
    assert "javascript:window.__xss=1" in page  # shown as text
    assert (
        '<a href="https://news.example.org/pine-ridge-neighbors" rel="noopener noreferrer">'
        in page
    )


@pytest.mark.asyncio
async def test_place_row_reads_as_place(ds):
    page = (await ds.client.get("/ring/agencies?listed_as=place")).text
    assert "Stillwater Crossing" in page
    assert "place named as a partner" in page
    row_page = (await ds.client.get("/ring/agencies/stillwater-crossing-or")).text
    assert "A place that a source names as a Ring partner" in row_page
    assert "Police Department" not in row_page.split("<h1>")[1].split("</h1>")[0]


# Agency row page


@pytest.mark.asyncio
async def test_row_page_timeline_newest_first(ds):
    response = await ds.client.get("/ring/agencies/55555555-5555-4555-8555-555555555555")
    assert response.status_code == 200
    page = response.text
    timeline = page.split('id="timeline"')[1].split('id="versions"')[0]
    labels = (">rejoined Ring's map<", ">left Ring's map<", ">joined Ring's map<")
    order = [timeline.index(label) for label in labels]
    assert order == sorted(order)
    assert "<code title=\"" + "c3" * 20 + "\">c3c3c3c3</code>" in timeline


@pytest.mark.asyncio
async def test_row_page_lists_versions(ds):
    page = (await ds.client.get("/ring/agencies/11111111-1111-4111-8111-111111111111")).text
    versions = page.split('id="versions"')[1]
    assert "data/agencies.json version 2" in versions
    assert "video_requests = 12" in versions
    assert versions.index("version 2") < versions.index("version 1")


@pytest.mark.asyncio
async def test_row_page_commit_links_with_repository(db_path):
    metadata = load_metadata()
    metadata["plugins"]["ring-site"]["repository_url"] = "https://git.example.org/ring/tracker/"
    datasette = site(db_path, metadata)
    page = (await datasette.client.get(
        "/ring/agencies/11111111-1111-4111-8111-111111111111")).text
    expected = ('<a href="https://git.example.org/ring/tracker/commit/' + "b2" * 20
                + '" rel="noopener noreferrer"><code>b2b2b2b2</code></a>')
    assert expected in page


@pytest.mark.asyncio
async def test_row_page_escapes_script_name(ds):
    response = await ds.client.get(f"/ring/agencies/{XSS_ID}")
    assert response.status_code == 200
    assert XSS_NAME not in response.text
    assert "<h1>&lt;script&gt;window.__xss=1&lt;/script&gt; Police Department</h1>" in response.text


@pytest.mark.asyncio
async def test_every_agency_row_reachable(ds, db_path):
    with sqlite3.connect(db_path) as conn:
        ids = [row[0] for row in conn.execute("select id from agencies")]
    for agency_id in ids:
        response = await ds.client.get(f"/ring/agencies/{agency_id}")
        assert response.status_code == 200, agency_id
        assert 'id="timeline"' in response.text, agency_id


# Canned queries

CANNED_CASES = [
    ("agencies_in_state", "state=or",
     {"Riverbend Police Department", "Cedar Hollow County Sheriff's Office",
      "Harbor Point Police Department", "Stillwater Crossing"}),
    ("joined_between", "start=2019-10-01&end=2019-12-31",
     {"Pine Ridge Police Department", "Harbor Point Police Department"}),
    ("search_agencies", "q=cedar hol", {"Cedar Hollow County Sheriff's Office"}),
    ("new_since", "since=2021-01-01",
     {"Harbor Point Police Department", "Juniper Gap Police Department"}),
    ("agencies_in_county", "county=lake&state=OR",
     {"Riverbend Police Department", "Harbor Point Police Department", "Stillwater Crossing"}),
    ("agencies_near", "lat=44.0&lon=-123.1&km=20",
     {"Riverbend Police Department", "Harbor Point Police Department", "Stillwater Crossing"}),
    ("agencies_that_left", "", {"Old Mill Police Department"}),
    ("agencies_by_type_in_state", "agency_type=fire&state=WA", {"Maple Falls Fire Department"}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("query, params, expected", CANNED_CASES)
async def test_canned_query_results(ds, query, params, expected):
    response = await ds.client.get(f"/ring/{query}.json?{params}&_shape=array")
    assert response.status_code == 200, response.text
    rows = response.json()
    names = {row.get("name") or row.get("agency_name") for row in rows}
    assert expected <= names
    if query in ("agencies_in_state", "agencies_in_county", "agencies_near"):
        assert names == expected


@pytest.mark.asyncio
async def test_agencies_near_excludes_far_and_sorts(ds):
    rows = (await ds.client.get(
        "/ring/agencies_near.json?lat=44.0&lon=-123.1&km=20&_shape=array")).json()
    distances = [row["distance_km"] for row in rows]
    assert distances == sorted(distances)
    assert all(distance <= 20 for distance in distances)


@pytest.mark.asyncio
async def test_canned_queries_blank_params_show_form(ds):
    for query, _, _ in CANNED_CASES:
        response = await ds.client.get(f"/ring/{query}")
        assert response.status_code == 200, query


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/ring/agencies_near?lat=&lon=&km=",
                                  "/ring/joined_between?start=&end="])
async def test_canned_query_submitted_empty_form(ds, path):
    response = await ds.client.get(path)
    assert response.status_code == 200


JOINED_BETWEEN_CASES = [
    # Join dates in the test data: Old Mill 2019-03-03, Riverbend 2019-05-14,
    # Cedar Hollow 2019-08-01, Pine Ridge 2019-10, Harbor Point 2019-11-05.
    ("2019-10", "2019-10", {"Pine Ridge Police Department"}),
    ("2019-10-15", "2019-10-20", {"Pine Ridge Police Department"}),
    ("2019-06", "2019-11-05", {"Cedar Hollow County Sheriff's Office",
                               "Pine Ridge Police Department",
                               "Harbor Point Police Department"}),
    ("2019-11", "2019-11", {"Harbor Point Police Department"}),
    ("2019", "2019", {"Old Mill Police Department", "Riverbend Police Department",
                      "Cedar Hollow County Sheriff's Office", "Pine Ridge Police Department",
                      "Harbor Point Police Department"}),
    ("2019-09", "2019-10-31", {"Pine Ridge Police Department"}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("start, end, expected", JOINED_BETWEEN_CASES)
async def test_joined_between_partial_dates(ds, start, end, expected):
    response = await ds.client.get(
        f"/ring/joined_between.json?start={start}&end={end}&_shape=array")
    assert response.status_code == 200, response.text
    assert {row["name"] for row in response.json()} == expected


@pytest.mark.asyncio
async def test_snapshot_and_coverage_queries(ds):
    snapshots = (await ds.client.get("/ring/snapshot_counts.json?_shape=array")).json()
    assert [row["agency_count"] for row in snapshots] == [2, 6, 5, 5, 6]
    coverage = (await ds.client.get("/ring/coverage_by_year.json?_shape=array")).json()
    published = {row["year"]: row["ring_published"] for row in coverage}
    assert published["2018"] == 40
    assert published["2019"] == 703
    assert published["2020"] == 1189


BAD_PARAMETERS = [
    ("joined_between", "start=2020-13-01&end=2020-12-31", "start='2020-13-01'"),
    ("joined_between", "start=yesterday&end=2020-12-31", "start='yesterday'"),
    ("new_since", "since=2020/01/01", "since='2020/01/01'"),
    ("agencies_near", "lat=44&lon=-123&km=-5", "km='-5'"),
    ("agencies_near", "lat=44&lon=-123&km=0", "km='0'"),
    ("agencies_near", "lat=95&lon=-123&km=5", "lat='95'"),
    ("agencies_near", "lat=44&lon=abc&km=5", "lon='abc'"),
    ("agencies_in_state", "state=Oregon", "state='Oregon'"),
    ("agencies_by_type_in_state", "agency_type=army&state=OR", "agency_type='army'"),
    ("joined_between", "start=2020-13&end=2020", "start='2020-13'"),
    ("joined_between", "start=20&end=2020", "start='20'"),
    ("joined_between", "start=2019", "but end is missing"),
    ("agencies_near", "lat=44&lon=-123", "but km is missing"),
    ("agencies_near", "lat=44", "but lon and km are missing"),
    ("agencies_near", "lat=44&lon=&km=5", "but lon is missing"),
    ("agencies_near", "km=5", "needs lat, lon and km together"),
    ("agencies_in_state", "state=ZZ", "state='ZZ' is not a USPS state code"),
    ("joined_between", "start=2020-01-01&end=2019-01-01", "start='2020-01-01' is after end='2019-01-01'"),
    ("joined_between", "start=2020&end=2019-12", "start='2020' is after end='2019-12'"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("query, params, fragment", BAD_PARAMETERS)
async def test_canned_query_bad_params_400(ds, query, params, fragment):
    response = await ds.client.get(f"/ring/{query}.json?{params}")
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    page = await ds.client.get(f"/ring/{query}?{params}")
    assert page.status_code == 400
    assert html.escape(fragment).replace("&#x27;", "&#39;") in page.text


# Feeds


def parse_feed(text: str) -> ET.Element:
    return ET.fromstring(text.encode("utf-8"))


@pytest.mark.asyncio
async def test_joins_feed_is_atom(ds):
    response = await ds.client.get("/ring/new_joins_feed.atom")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    feed = parse_feed(response.text)
    assert feed.tag == f"{ATOM}feed"
    titles = [entry.findtext(f"{ATOM}title") for entry in feed.iter(f"{ATOM}entry")]
    assert XSS_NAME + " (TX) joined Ring's map" in titles  # XML text, escaped by the serializer
    assert "<script>" not in response.text


@pytest.mark.asyncio
async def test_departures_feed_per_state(ds):
    feed = parse_feed((await ds.client.get("/ring/departures_feed.atom?state=AL")).text)
    titles = [entry.findtext(f"{ATOM}title") for entry in feed.iter(f"{ATOM}entry")]
    assert titles == ["Old Mill Police Department (AL) left"]


@pytest.mark.asyncio
async def test_empty_feed_still_valid(ds):
    response = await ds.client.get("/ring/departures_feed.atom?state=WA")
    assert response.status_code == 200
    feed = parse_feed(response.text)
    titles = [entry.findtext(f"{ATOM}title") for entry in feed.iter(f"{ATOM}entry")]
    assert titles == ["No departures recorded yet"]


# Pages


@pytest.mark.asyncio
async def test_state_page_counts(ds):
    response = await ds.client.get("/state/OR")
    assert response.status_code == 200
    page = response.text
    assert "<h1>Ring partnerships in Oregon (OR)</h1>" in page
    assert "<strong>3</strong> on Ring's map" in page
    assert "<strong>1</strong> known from public reporting" in page
    assert "/-/ring/charts/monthly-joins.svg?state=OR" in page


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/state/ZZ", "/state/ORE", "/state/Atlantis", "/state/zz"])
async def test_unknown_state_404(ds, path):
    response = await ds.client.get(path)
    assert response.status_code == 404


@pytest.mark.asyncio
async def test_state_page_escapes_script_name(ds):
    page = (await ds.client.get("/state/TX")).text
    assert XSS_NAME not in page
    assert html.escape(XSS_NAME, quote=False) in page


@pytest.mark.asyncio
async def test_about_page(ds, db_path):
    response = await ds.client.get("/about")
    assert response.status_code == 200
    latest = query_one(db_path, "select commit_hash from snapshots order by date desc limit 1")
    assert latest in response.text
    for anchor in ("sources", "method", "joined", "coverage", "limitations", "licence",
                   "cite", "errors"):
        assert f'id="{anchor}"' in response.text


@pytest.mark.asyncio
@pytest.mark.parametrize("configured, expected", [
    ("https://git.example.org/ring/tracker/", "https://git.example.org/ring/tracker"),
    ("", None),
    ("javascript:alert(1)", None),
])
async def test_about_page_repository_links(db_path, configured, expected):
    metadata = load_metadata()
    metadata["plugins"]["ring-site"]["repository_url"] = configured
    page = (await site(db_path, metadata).client.get("/about")).text
    if expected:
        assert f'<a href="{expected}/issues">' in page
        assert f'<a href="{expected}">{expected}</a>.</p></blockquote>' in page
    else:
        assert "/issues" not in page
        assert "javascript:" not in page


@pytest.mark.asyncio
async def test_search_page_finds_agency(ds):
    response = await ds.client.get("/search?q=Riverbend")
    assert response.status_code == 200
    assert "Riverbend Police Department" in response.text
    assert "Not found in this data" not in response.text


@pytest.mark.asyncio
async def test_search_page_county_and_quotes(ds):
    page = (await ds.client.get('/search?q=Whatcom')).text
    assert "Maple Falls Fire Department" in page
    page = (await ds.client.get('/search?q=%22Whatcom')).text
    assert "Maple Falls Fire Department" in page


@pytest.mark.asyncio
async def test_search_page_not_found_message(ds):
    response = await ds.client.get("/search?q=Atlantis")
    assert response.status_code == 200
    assert "Not found in this data" in response.text
    assert "This data covers 9 agencies" in response.text


@pytest.mark.asyncio
async def test_search_page_too_long_400(ds):
    response = await ds.client.get("/search?q=" + "a" * 201)
    assert response.status_code == 400
    assert "use at most 200" in response.text


# Charts


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/-/ring/charts/monthly-joins.svg",
                                  "/-/ring/charts/monthly-joins.svg?state=OR",
                                  "/-/ring/charts/states.svg",
                                  "/-/ring/charts/states.svg?measure=video_requests"])
async def test_chart_routes_return_svg(ds, path):
    response = await ds.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.text.lstrip().startswith("<svg")
    assert "<path" in response.text


@pytest.mark.asyncio
async def test_state_map_coordinates_rounded(ds):
    svg = (await ds.client.get("/-/ring/charts/states.svg")).text
    path_data = re.findall(r' d="([^"]*)"', svg)
    # One outline per state and territory that us-atlas draws, at least.
    assert len(path_data) >= 50
    assert not [data for data in path_data if re.search(r"\d\.\d\d", data)]


@pytest.mark.asyncio
async def test_state_map_measures(ds):
    agencies = (await ds.client.get("/-/ring/charts/states.svg")).text
    requests = (await ds.client.get("/-/ring/charts/states.svg?measure=video_requests")).text
    assert "Agencies on Ring" in agencies
    assert "Video requests in the quarter" in requests
    bad = await ds.client.get("/-/ring/charts/states.svg?measure=population")
    assert bad.status_code == 400
    assert "'population' is not one of agencies, video_requests, agencies_per_million" in bad.text


@pytest.fixture(scope="module")
def populations_db_path(db_path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("populations") / "ring.db"
    shutil.copyfile(db_path, path)
    add_state_populations(path)
    return path


@pytest_asyncio.fixture
async def populations_ds(populations_db_path):
    return await started_site(populations_db_path)


@pytest.mark.asyncio
async def test_per_million_absent_without_populations(ds):
    chart = await ds.client.get("/-/ring/charts/states.svg?measure=agencies_per_million")
    assert chart.status_code == 404
    assert "needs the state_populations table" in chart.text
    home = (await ds.client.get("/?map=agencies_per_million")).text
    assert "map=agencies_per_million" not in home
    assert 'src="/-/ring/charts/states.svg?measure=agencies"' in home
    assert "needs state populations from a cited source" in home


@pytest.mark.asyncio
async def test_per_million_map_and_table(populations_ds, populations_db_path):
    chart = await populations_ds.client.get("/-/ring/charts/states.svg?measure=agencies_per_million")
    assert chart.status_code == 200
    assert "per million residents" in chart.text
    # States without a population row (all but OR and TX) are drawn grey.
    assert chart.text.count('fill="#d9d9d9"') >= 40

    home = (await populations_ds.client.get("/?map=agencies_per_million")).text
    assert 'src="/-/ring/charts/states.svg?measure=agencies_per_million"' in home
    assert '<th scope="col">Per million residents</th>' in home
    for row in POPULATIONS:
        listed = query_one(
            populations_db_path,
            "select count(*) from agencies where state = ? and status in ('active', 'reported')",
            (row["state"],),
        )
        per_million = round(listed * 1_000_000 / row["population"], 1)
        assert f'<td data-label="Per million residents">{per_million}</td>' in home
        assert f'<a href="{row["source_url"]}">' in home
    assert "needs state populations" not in home


@pytest.mark.asyncio
async def test_home_switches_state_map(ds):
    default = (await ds.client.get("/")).text
    assert 'src="/-/ring/charts/states.svg?measure=agencies"' in default
    switched = (await ds.client.get("/?map=video_requests")).text
    assert 'src="/-/ring/charts/states.svg?measure=video_requests"' in switched
    assert "<strong>video requests</strong>" in switched


@pytest.mark.asyncio
async def test_chart_route_bad_state_400(ds):
    response = await ds.client.get("/-/ring/charts/monthly-joins.svg?state=Oregon")
    assert response.status_code == 400


# Metadata


def visible_tables(db_path: Path, metadata: dict) -> dict[str, list[str]]:
    tables = metadata["databases"]["ring"]["tables"]
    with sqlite3.connect(db_path) as conn:
        names = [
            row[0] for row in conn.execute(
                "select name from sqlite_master where type in ('table', 'view') "
                "and name not like 'sqlite_%'"
            )
        ]
        visible = {}
        for name in names:
            if name.startswith("agencies_fts") or tables.get(name, {}).get("hidden"):
                continue
            visible[name] = [row[1] for row in conn.execute(f"pragma table_info([{name}])")]
    return visible


def test_metadata_describes_every_table_and_column(populations_db_path):
    metadata = load_metadata()
    tables = metadata["databases"]["ring"]["tables"]
    missing = []
    visible = visible_tables(populations_db_path, metadata)
    assert "state_populations" in visible
    for table, columns in visible.items():
        if not tables.get(table, {}).get("description"):
            missing.append(table)
        described = tables.get(table, {}).get("columns") or {}
        missing.extend(f"{table}.{column}" for column in columns if not described.get(column))
    assert missing == []


def test_metadata_canned_queries_have_descriptions():
    queries = load_metadata()["databases"]["ring"]["queries"]
    assert len(queries) >= 9
    assert [name for name, query in queries.items()
            if not query.get("title") or not query.get("description")] == []


@pytest.mark.asyncio
async def test_hidden_tables_not_listed(ds):
    page = (await ds.client.get("/ring")).text
    assert 'href="/ring/agencies_fts"' not in page
    assert 'href="/ring/agencies"' in page


@pytest.mark.asyncio
async def test_plugins_loaded(ds):
    plugins = {plugin["name"] for plugin in (await ds.client.get("/-/plugins.json")).json()}
    assert {"datasette-cluster-map", "datasette-vega", "datasette-atom",
            "query_parameters.py", "cell_links.py", "home_figures.py"} <= plugins


@pytest.mark.asyncio
async def test_row_page_cites_report(ds):
    page = (await ds.client.get("/ring/agencies/pine-ridge-police-department-wa")).text
    sources = page.split('id="sources"')[1].split('id="timeline"')[0]
    assert (
        '<a href="https://news.example.org/pine-ridge-neighbors" rel="noopener noreferrer">'
        in sources
    )
    assert "Reported on 2019-10-22" in sources
    assert "The department announced it joined the Neighbors portal in October." in sources
    timeline = page.split('id="timeline"')[1]
    assert "report added to this dataset (not a join date)" in timeline


@pytest.mark.asyncio
async def test_row_page_never_links_javascript(ds):
    page = (await ds.client.get("/ring/agencies/44444444-4444-4444-8444-444444444444")).text
    sources = page.split('id="sources"')[1].split('id="timeline"')[0]
    assert "javascript:window.__xss=1" in sources
    assert 'href="javascript:' not in page


# Search by place and state


@pytest.mark.asyncio
@pytest.mark.parametrize("text", ["Old Mill, AL", "Old Mill AL", "Old Mill, Alabama",
                                  "Dale County, AL", "old mill alabama", "  Old  Mill ,, al ",
                                  "OLD MILL ALABAMA", "Old Mi, AL"])
async def test_search_place_and_state(ds, text):
    response = await ds.client.get("/search", params={"q": text})
    assert response.status_code == 200
    results = response.text.split('id="search-results"')[1].split("</ul>")[0]
    assert "Old Mill Police Department" in results
    assert "Not found in this data" not in response.text
    assert 'href="/state/AL"' in response.text


@pytest.mark.asyncio
async def test_search_state_filters_results(ds):
    page = (await ds.client.get("/search", params={"q": "Lake County, Oregon"})).text
    results = page.split('id="search-results"')[1].split("</ul>")[0]
    for name in ("Riverbend Police Department", "Harbor Point Police Department",
                 "Stillwater Crossing"):
        assert name in results
    assert "Cedar Hollow" not in results
    other_state = await ds.client.get("/search", params={"q": "Riverbend, WA"})
    assert other_state.status_code == 200
    assert "Not found in this data" in other_state.text
    assert "Riverbend Police Department" not in other_state.text
    assert "in Washington" in other_state.text


@pytest.mark.asyncio
async def test_search_state_alone_lists_state(ds):
    page = (await ds.client.get("/search", params={"q": "Washington"})).text
    results = page.split('id="search-results"')[1].split("</ul>")[0]
    assert "Maple Falls Fire Department" in results
    assert "Pine Ridge Police Department" in results
    assert "Riverbend" not in results


@pytest.mark.asyncio
async def test_search_name_ending_in_state(extra_ds):
    # "Washington" is a state name, but no agency in Washington is called
    # "Fort", so the whole text is searched as a phrase once more.
    page = (await extra_ds.client.get("/search", params={"q": "Fort Washington"})).text
    assert "Fort Washington Police Department" in page
    assert "Not found in this data" not in page
    assert "read as" not in page


@pytest.mark.asyncio
@pytest.mark.parametrize("text", ["Atlantis, AL", "Old Mill' or 1=1 --, AL",
                                  'Old Mill" OR state:AL, AL', "Old Mill, ZZ"])
async def test_search_place_not_found(ds, text):
    response = await ds.client.get("/search", params={"q": text})
    assert response.status_code == 200
    assert "Not found in this data" in response.text
    assert 'id="search-results"' not in response.text


# Navigation menu on Datasette's pages

MENU = [("/", "Home"), ("/ring/agencies", "Agencies"), ("/ring/agencies_map", "Map"),
        ("/ring/events", "Events"), ("/search", "Search"), ("/about", "About")]


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/ring", "/ring/agencies", "/ring/events",
                                  "/ring/agencies/11111111-1111-4111-8111-111111111111",
                                  "/ring/agencies_near", "/ring?sql=select+1"])
async def test_menu_links_on_datasette_pages(ds, path):
    response = await ds.client.get(path)
    assert response.status_code == 200
    menu = response.text.split('class="nav-menu-inner"')[1].split("</ul>")[0]
    links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', menu)
    assert links == MENU


# Agency page: the answer at the top


def answer_text(page: str) -> str:
    return collapse_spaces(page.split('id="answer"')[1].split("</div>")[0])


@pytest.mark.asyncio
async def test_agency_answer_reported_row(ds):
    page = (await ds.client.get("/ring/agencies/pine-ridge-police-department-wa")).text
    answer = answer_text(page)
    assert ("<strong>Reported as a Ring partner on 2019-10-22</strong> by "
            '<a href="https://news.example.org/pine-ridge-neighbors" rel="noopener noreferrer">'
            "news.example.org</a>; <strong>join date: 2019-10</strong>.") in answer


@pytest.mark.asyncio
async def test_agency_answer_without_join_date(ds):
    page = (await ds.client.get("/ring/agencies/stillwater-crossing-or")).text
    assert "; <strong>join date: not given by the source</strong>." in answer_text(page)


@pytest.mark.asyncio
async def test_agency_answer_map_row(ds):
    page = (await ds.client.get("/ring/agencies/11111111-1111-4111-8111-111111111111")).text
    answer = answer_text(page)
    assert ("<strong>On Ring's Active Agency Map since 2020-03-02</strong> "
            "(the map gives Active Date 2019-05-14).") in answer
    assert "Reported" not in answer


@pytest.mark.asyncio
async def test_agency_answer_ended_map_row(ds):
    page = (await ds.client.get("/ring/agencies/66666666-6666-4666-8666-666666666666")).text
    answer = answer_text(page)
    assert "<strong>Left Ring's map on 2021-01-10</strong>" in answer
    assert "Active Agency Map since" not in answer


@pytest.mark.asyncio
async def test_agency_answer_source_not_web_url(extra_ds):
    page = (await extra_ds.client.get(
        "/ring/agencies/sagebrush-flats-police-department-nv")).text
    answer = answer_text(page)
    assert "by javascript:window.__xss=1; <strong>join date: not given by the source</strong>." in answer
    assert 'href="javascript:' not in page


@pytest.mark.asyncio
async def test_agency_answer_withdrawn_row(extra_ds):
    page = (await extra_ds.client.get(
        "/ring/agencies/fort-washington-police-department-pa")).text
    answer = answer_text(page)
    assert "join date: 2019</strong>." in answer
    assert "withdrawn from this data on 2020-06-01" in answer


@pytest.mark.asyncio
async def test_agency_page_collapses_raw_row(ds):
    page = (await ds.client.get("/ring/agencies/11111111-1111-4111-8111-111111111111")).text
    answer = page.index('id="answer"')
    details = page.index('<details class="ring-all-fields" id="all-fields">')
    table = page.index('<table class="rows-and-columns">')
    assert answer < details < table
    assert "<summary>All fields</summary>" in page
    assert page.index("</details>", details) > table


# State pages


@pytest.mark.asyncio
async def test_state_page_full_name(ds):
    page = (await ds.client.get("/state/AL")).text
    assert "<h1>Ring partnerships in Alabama (AL)</h1>" in page
    assert "<title>Ring partnerships in Alabama (AL): Ring Partnership Tracker</title>" in page


@pytest.mark.asyncio
@pytest.mark.parametrize("path, location", [("/state/al", "/state/AL"),
                                            ("/state/Alabama", "/state/AL"),
                                            ("/state/alabama", "/state/AL"),
                                            ("/state/ALABAMA", "/state/AL"),
                                            ("/state/Or", "/state/OR"),
                                            ("/state/new~20york", "/state/NY"),
                                            ("/state/District~20of~20Columbia", "/state/DC")])
async def test_state_page_redirects(ds, path, location):
    response = await ds.client.get(path)
    assert response.status_code == 302
    assert response.headers["location"] == location


@pytest.mark.asyncio
async def test_state_name_with_space_redirects(ds):
    # Datasette first redirects a path with %20 to its ~20 form.
    response = await ds.client.get("/state/New%20York")
    assert response.status_code == 302
    response = await ds.client.get(response.headers["location"])
    assert response.status_code == 302
    assert response.headers["location"] == "/state/NY"


@pytest.mark.asyncio
async def test_state_without_join_dates(extra_ds):
    response = await extra_ds.client.get("/state/NV")
    assert response.status_code == 200
    page = response.text
    assert "<h1>Ring partnerships in Nevada (NV)</h1>" in page
    assert 'id="no-join-months"' in page
    assert "gives a join date, so there is no chart" in collapse_spaces(page)
    assert "monthly-joins.svg" not in page


@pytest.mark.asyncio
async def test_state_with_year_only_dates(extra_ds):
    page = collapse_spaces((await extra_ds.client.get("/state/PA")).text)
    assert "only as a year, so there is no monthly chart" in page
    assert "monthly-joins.svg" not in page


@pytest.mark.asyncio
async def test_state_table_cells_labelled(ds):
    page = (await ds.client.get("/state/OR")).text
    table = page.split('<table class="rows-and-columns ring-cards">')[1].split("</table>")[0]
    body = table.split("<tbody>")[1]
    rows = body.count("<tr>")
    assert rows == 4
    for label in ("Name", "Type", "City", "County", "Joined", "Status"):
        assert body.count(f'<td data-label="{label}">') == rows, label


@pytest.mark.asyncio
async def test_state_timeline_names_source(ds):
    page = collapse_spaces((await ds.client.get("/state/WA")).text)
    timeline = page.split("<h2>Timeline</h2>")[1].split("<h2>")[0]
    assert "Pine Ridge Police Department</a> report added to this dataset" in timeline
    assert "Maple Falls Fire Department</a> joined Ring's map" in timeline


@pytest.mark.asyncio
async def test_baseline_join_not_called_join(tmp_path):
    # The first map snapshot lists agencies that joined at an unknown,
    # earlier date; the timeline must not date their join.
    path = build_site_db(tmp_path / "ring.db")
    agency_id = "55555555-5555-4555-8555-555555555555"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "update events set baseline = 1 where agency_id = ? and event = 'joined'", [agency_id]
        )
    datasette = site(path)
    page = (await datasette.client.get(f"/ring/agencies/{agency_id}")).text
    timeline = page.split('id="timeline"')[1].split('id="versions"')[0]
    assert ">on Ring's map when tracking began<" in timeline
    assert ">joined Ring's map<" not in timeline


@pytest.mark.asyncio
async def test_no_map_snapshot_no_map_figures(tmp_path):
    # Without a snapshot of Ring's map, "0 on Ring's map" would read as a fact.
    path = build_site_db(tmp_path / "ring.db")
    with sqlite3.connect(path) as conn:
        conn.execute("delete from snapshots where source = 'data/agencies.json'")
    datasette = site(path)
    state_page = (await datasette.client.get("/state/OR")).text
    assert "No snapshot of Ring's own map is in this data yet" in state_page
    assert "</strong> on Ring's map</li>" not in state_page
    assert "</strong> left Ring's map</li>" not in state_page
    home = (await datasette.client.get("/")).text
    assert "No snapshot of Ring's own map is in this data yet" in home
    assert '<th scope="col">On Ring\'s map</th>' not in home

"""Test the Datasette site (metadata.yml, plugins/, templates/) in process on a small database."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import urlsplit
import html
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import pytest_asyncio
import yaml
from datasette.app import Datasette

from tests.site_db import XSS_NAME, build_site_db

ROOT = Path(__file__).resolve().parent.parent
XSS_ID = "44444444-4444-4444-8444-444444444444"
SETTINGS = {"sql_time_limit_ms": 1000, "max_returned_rows": 1000, "facet_time_limit_ms": 200}
ATOM = "{http://www.w3.org/2005/Atom}"


def load_metadata() -> dict:
    with open(ROOT / "metadata.yml", encoding="utf-8") as metadata:
        return yaml.safe_load(metadata)


@pytest.fixture(scope="module")
def db_path(tmp_path_factory) -> Path:
    return build_site_db(tmp_path_factory.mktemp("site") / "ring.db")


@pytest_asyncio.fixture
async def ds(db_path):
    datasette = Datasette(
        [],
        immutables=[str(db_path)],
        metadata=load_metadata(),
        template_dir=str(ROOT / "templates"),
        plugins_dir=str(ROOT / "plugins"),
        settings=SETTINGS,
    )
    await datasette.invoke_startup()
    return datasette


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
    order = [timeline.index(word) for word in (">rejoined<", ">left<", ">joined<")]
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
    datasette = Datasette([], immutables=[str(db_path)], metadata=metadata,
                          template_dir=str(ROOT / "templates"),
                          plugins_dir=str(ROOT / "plugins"))
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
async def test_snapshot_and_coverage_queries(ds):
    snapshots = (await ds.client.get("/ring/snapshot_counts.json?_shape=array")).json()
    assert [row["agency_count"] for row in snapshots] == [2, 6, 5, 5, 6]
    coverage = (await ds.client.get("/ring/coverage_by_year.json?_shape=array")).json()
    published = {row["year"]: row["ring_published"] for row in coverage}
    assert published["2018"] == 40 and published["2019"] == 703 and published["2020"] == 1189


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
    assert "<h1>Ring partnerships in OR</h1>" in page
    assert "<strong>3</strong> on Ring's map" in page
    assert "<strong>1</strong> known from public reporting" in page
    assert "/-/ring/charts/monthly-joins.svg?state=OR" in page


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/state/ZZ", "/state/or", "/state/ORE"])
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
async def test_state_map_measures(ds):
    agencies = (await ds.client.get("/-/ring/charts/states.svg")).text
    requests = (await ds.client.get("/-/ring/charts/states.svg?measure=video_requests")).text
    assert "Agencies on Ring" in agencies
    assert "Video requests in the quarter" in requests
    bad = await ds.client.get("/-/ring/charts/states.svg?measure=population")
    assert bad.status_code == 400
    assert "'population' is not one of agencies, video_requests" in bad.text


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


def test_metadata_describes_every_table_and_column(db_path):
    metadata = load_metadata()
    tables = metadata["databases"]["ring"]["tables"]
    missing = []
    for table, columns in visible_tables(db_path, metadata).items():
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
    assert "added to this data" in timeline


@pytest.mark.asyncio
async def test_row_page_never_links_javascript(ds):
    page = (await ds.client.get("/ring/agencies/44444444-4444-4444-8444-444444444444")).text
    sources = page.split('id="sources"')[1].split('id="timeline"')[0]
    assert "javascript:window.__xss=1" in sources
    assert 'href="javascript:' not in page

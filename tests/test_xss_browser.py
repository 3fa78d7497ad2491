"""Load every kind of page in real Chromium with hostile names, addresses and URLs in the data.

The database is the site test database plus agencies carrying the HTML and JavaScript
payloads of the scraper corpus (tests/corpus/html-js-names.kml) and `javascript:` and
`data:` URLs in every link column. A payload that runs sets window.__xss. Every request
to a host other than 127.0.0.1 is aborted.
"""

from __future__ import annotations

import importlib.util
import sys
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import pytest
import sqlite_utils

from tests.site_db import COMMIT_1, DATE_1, DATE_2, MAP_SOURCE, build_site_db

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ATOM = "{http://www.w3.org/2005/Atom}"

IMG_NAME = "<img src=x onerror=window.__xss=1> Police Department"
QUOTE_NAME = '"><iframe src=javascript:window.__xss=1> Fire Department'
SCRIPT_CITY = "<script>window.__xss=1</script>"
SVG_COUNTY = "<svg onload=window.__xss=1> County"
SAFE_URL = 'https://news.example.org/xss-case?a=1&b="><script>window.__xss=1</script>'
HOSTILE_URLS = ("javascript:window.__xss=1", " JavaScript:window.__xss=1", "data:text/html,<script>window.__xss=1</script>")
# urlsplit raises ValueError on this one; the page must still render it as text.
BROKEN_URL = "https://[news.example.org/<script>window.__xss=1</script>"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt-get install chromium)"
)


def load_module():
    spec = importlib.util.spec_from_file_location("loadtest_load", ROOT / "loadtest" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def payload_agency(**values) -> dict:
    row = {
        "agency_type": "police", "listed_as": "agency", "geocode_source": "source:point",
        "source": MAP_SOURCE, "status": "active", "first_seen": DATE_1, "last_seen": DATE_2,
        "times_rejoined": 0, "commit_hash": COMMIT_1, "joined": "2020-05-01", "video_requests": 1,
    }
    row.update(values)
    return row


def add_payloads(path: Path) -> None:
    db = sqlite_utils.Database(path)
    db["agencies"].insert_all([
        payload_agency(
            id="xss-img-police-oh", name=IMG_NAME, city=SCRIPT_CITY, county=SVG_COUNTY, state="OH",
            address=f"{SCRIPT_CITY}, OH", latitude=39.96, longitude=-82.99,
            source_url=HOSTILE_URLS[0], profile_url=HOSTILE_URLS[1], reported_source_url=HOSTILE_URLS[2],
            evidence="<b onmouseover=window.__xss=1>evidence</b>",
        ),
        payload_agency(
            id="xss-quote-fire-tx", name=QUOTE_NAME, agency_type="fire", city="Quote's & Co", county=SVG_COUNTY,
            state="TX", address="Quote's & Co, TX", latitude=31.0, longitude=-97.0,
            source_url=SAFE_URL, profile_url=HOSTILE_URLS[0], reported_source_url=SAFE_URL,
            status="ended", ended_on=DATE_2,
        ),
        payload_agency(
            id="xss-broken-url-wa", name="Broken Link Police Department", city="Tacoma", state="WA",
            source_url=BROKEN_URL, reported_source_url=BROKEN_URL, profile_url=BROKEN_URL,
        ),
    ])
    db["agencies"].rebuild_fts()
    db["events"].insert_all([
        {"id": "xss:joined:xss-img-police-oh", "agency_id": "xss-img-police-oh", "source_agency_id": "xss-img-police-oh",
         "agency_name": IMG_NAME, "state": "OH", "source": MAP_SOURCE, "event": "joined", "date": DATE_2,
         "commit_hash": COMMIT_1, "changes": None, "baseline": 0},
        {"id": "xss:left:xss-quote-fire-tx", "agency_id": "xss-quote-fire-tx", "source_agency_id": "xss-quote-fire-tx",
         "agency_name": QUOTE_NAME, "state": "TX", "source": MAP_SOURCE, "event": "left", "date": DATE_2,
         "commit_hash": COMMIT_1, "changes": '{"name": ["<script>window.__xss=1</script>", "x"]}',
         "baseline": 0},
    ])
    db.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = build_site_db(tmp_path_factory.mktemp("xss") / "ring.db")
    add_payloads(db)
    load = load_module()
    with load.datasette_server(db, tmp_path_factory.mktemp("xss-logs") / "datasette.log") as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    def route(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            route.abort()

    page.route("**/*", route)
    yield page
    context.close()


# Hrefs and sources that would run script, and inline handlers that a payload could add.
DANGEROUS_NODES = """() => {
  const bad = [];
  for (const node of document.querySelectorAll('*')) {
    for (const attribute of node.attributes) {
      const value = attribute.value.replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
      if (attribute.name.startsWith('on')) bad.push(node.tagName + ' ' + attribute.name);
      if (['href', 'src', 'action', 'formaction', 'srcdoc'].includes(attribute.name)
          && (value.startsWith('javascript:') || value.startsWith('vbscript:')
              || (attribute.name === 'href' && value.startsWith('data:')) || attribute.name === 'srcdoc')) {
        bad.push(node.tagName + ' ' + attribute.name + '=' + attribute.value);
      }
    }
  }
  return bad;
}"""

# Each page, and payload text it must show (so the test cannot pass on a page that lost the row).
PAGES = [
    ("/", IMG_NAME),
    ("/ring/agencies", IMG_NAME),
    ("/ring/agencies?_facet=county&_facet=city", SVG_COUNTY),
    ("/ring/agencies/xss-img-police-oh", IMG_NAME),
    ("/ring/agencies/xss-quote-fire-tx", QUOTE_NAME),
    ("/state/OH", IMG_NAME),
    ("/state/TX", QUOTE_NAME),
    ("/search?q=" + quote("Police"), IMG_NAME),
    ("/search?q=" + quote(QUOTE_NAME), None),
    ("/about", None),
    ("/ring/events", IMG_NAME),
    ("/ring/agencies_in_state?state=OH", IMG_NAME),
    ("/ring/search_agencies?q=Fire", QUOTE_NAME),
    ("/ring/new_since?since=2000-01-01", IMG_NAME),
    ("/ring/agencies_that_left", QUOTE_NAME),
    ("/ring/agencies_in_county?county=" + quote(SVG_COUNTY) + "&state=", IMG_NAME),
    ("/ring?sql=" + quote("select name, city, source_url, profile_url, reported_source_url from agencies"), IMG_NAME),
]


@pytest.mark.parametrize(("path", "shown"), PAGES, ids=[path for path, _ in PAGES])
def test_page_never_runs_payloads(server, page, path, shown):
    response = page.goto(server + path)
    page.wait_for_load_state("networkidle")

    assert response.status == 200, path
    if shown:
        assert shown in page.inner_text("body")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate(DANGEROUS_NODES) == []


def test_source_links_are_web_only_and_without_referrer(server, page):
    page.goto(server + "/ring/agencies?id__startswith=xss-")

    links = page.evaluate("""() => Array.from(document.querySelectorAll('td a[href]'))
        .map(a => [a.getAttribute('href'), a.getAttribute('rel') || ''])""")
    external = [(href, rel) for href, rel in links if href.startswith(("http://", "https://"))]
    assert [href for href, _ in external].count(SAFE_URL) == 2
    assert all(set(rel.split()) >= {"noopener", "noreferrer"} for _, rel in external), external
    text = page.inner_text("table")
    assert "javascript:window.__xss=1" in text
    assert "data:text/html," in text
    assert BROKEN_URL in text


def test_row_page_links_only_web_urls(server, page):
    for agency_id in ("xss-img-police-oh", "xss-quote-fire-tx"):
        page.goto(f"{server}/ring/agencies/{agency_id}")
        # Datasette's own footer links to datasette.io; only links from the page body count.
        links = page.evaluate("""() => Array.from(document.querySelectorAll('a[href]'))
            .filter(a => !a.closest('footer'))
            .map(a => [a.getAttribute('href'), a.getAttribute('rel') || ''])""")
        assert any(href == SAFE_URL for href, _ in links) or agency_id != "xss-quote-fire-tx", links
        for href, rel in links:
            assert not href.strip().lower().startswith(("javascript:", "data:")), href
            if href.startswith(("http://", "https://")) and urlsplit(href).hostname != "127.0.0.1":
                assert set(rel.split()) >= {"noopener", "noreferrer"}, href


def test_map_popup_shows_payload_as_text(server, page):
    page.goto(server + "/ring/agencies_map?id=xss-img-police-oh")
    marker = page.locator(".leaflet-marker-icon").first
    marker.wait_for(timeout=15000)
    marker.click()
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()

    assert IMG_NAME in popup.inner_text()
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate(DANGEROUS_NODES) == []


@pytest.mark.parametrize(("feed", "name"), [("new_joins_feed", IMG_NAME), ("departures_feed", QUOTE_NAME)])
def test_atom_feeds_escape_names(server, page, feed, name):
    with urllib.request.urlopen(f"{server}/ring/{feed}.atom", timeout=10) as response:
        body = response.read()

    entries = ElementTree.fromstring(body).findall(f"{ATOM}entry")
    titles = [entry.findtext(f"{ATOM}title") for entry in entries]
    assert any(title.startswith(name) for title in titles), titles
    for entry in entries:
        for element in entry:
            assert element.get("type") in (None, "text"), ElementTree.tostring(element)
    page.goto(f"{server}/ring/{feed}.atom")
    assert page.evaluate("typeof window.__xss") == "undefined"

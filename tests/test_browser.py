"""Test the site in real headless Chromium against a real `datasette` server on 127.0.0.1.

Every request to a host other than 127.0.0.1 is aborted, so map tiles are
never fetched. Screenshots go to test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.site_db import REPORTED_SOURCE, build_site_db

ROOT = Path(__file__).resolve().parent.parent
# CI runners without Debian's chromium point this at their Chrome (e.g. /usr/bin/google-chrome).
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WIDTHS = {"desktop": 1280, "mobile": 375}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is not installed (apt-get install chromium, or set CHROMIUM_PATH to a Chrome binary)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"datasette exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"datasette did not answer at {url} within {timeout} s")


# An invented reported row whose source URL and evidence have long unbroken
# strings, the values that widen a narrow page when they do not wrap.
LONG_URL_ID = "long-lake-police-department-mn"
LONG_URL = ("https://news.example.org/2019/12/06/long-lake-police-department-joins-"
            "neighbors-app-by-ring-to-gather-doorbell-camera-footage-from-residents"
            "?utm_source=feed&utm_medium=rss&utm_campaign=ring-neighbors-portal-partnership")


def add_long_url_agency(db_path: Path) -> None:
    row = {
        "id": LONG_URL_ID, "name": "Long Lake Police Department", "agency_type": "police",
        "listed_as": "agency", "city": "Long Lake", "state": "MN", "reported_on": "2019-12-06",
        "evidence": "The department's page names " + "Neighbors-app-portal-" * 6 + "partner.",
        "source": REPORTED_SOURCE, "source_url": LONG_URL, "reported_source_url": LONG_URL,
        "status": "reported", "first_seen": "2019-12-20T12:00:00+00:00",
        "last_seen": "2019-12-20T12:00:00+00:00", "times_rejoined": 0,
        "commit_hash": "e5" * 20,
    }
    with sqlite3.connect(db_path) as conn:
        columns = ", ".join(row)
        placeholders = ", ".join(f":{name}" for name in row)
        conn.execute(f"insert into agencies ({columns}) values ({placeholders})", row)
        conn.execute("insert into agencies_fts (agencies_fts) values ('rebuild')")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db_path = build_site_db(tmp_path_factory.mktemp("browser") / "ring.db")
    add_long_url_agency(db_path)
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "datasette"), "serve",
        "-i", str(db_path),
        "--plugins-dir", str(ROOT / "plugins"),
        "--template-dir", str(ROOT / "templates"),
        "-m", str(ROOT / "metadata.yml"),
        "--setting", "sql_time_limit_ms", "1000",
        "--setting", "max_returned_rows", "1000",
        "--setting", "facet_time_limit_ms", "200",
        "--host", "127.0.0.1", "--port", str(port),
    ]
    log_path = tmp_path_factory.mktemp("logs") / "datasette.log"
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_server(base + "/-/versions.json", process)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


class PageProbe:
    """A page that records console errors and blocks every host but 127.0.0.1."""

    def __init__(self, browser, width: int):
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.blocked: list[str] = []
        self.page.route("**/*", self.route)
        self.page.on("console", self.on_console)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def route(self, route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def on_console(self, message):
        # Aborted tile requests log "Failed to load resource", which is expected.
        if message.type == "error" and "net::ERR_FAILED" not in message.text \
                and "Failed to load resource" not in message.text:
            self.errors.append(message.text)

    def close(self):
        self.context.close()


@pytest.fixture
def probe(browser):
    probes = []

    def make(width: int = WIDTHS["desktop"]) -> PageProbe:
        probes.append(PageProbe(browser, width))
        return probes[-1]

    yield make
    for item in probes:
        item.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def assert_no_xss(page) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined"


@pytest.mark.parametrize("label", sorted(WIDTHS))
def test_home_page_renders(server, probe, label):
    item = probe(WIDTHS[label])
    item.page.goto(server + "/")
    item.page.wait_for_load_state("networkidle")
    chart = item.page.locator('img[src="/-/ring/charts/monthly-joins.svg"]')
    chart.wait_for()
    assert chart.evaluate("img => img.complete && img.naturalWidth > 0")
    choropleth = item.page.locator('img[src="/-/ring/charts/states.svg?measure=agencies"]')
    assert choropleth.evaluate("img => img.complete && img.naturalWidth > 0")
    screenshot(item.page, f"home-{label}")
    assert_no_xss(item.page)
    assert item.errors == []
    if label == "mobile":
        width = item.page.evaluate("document.documentElement.scrollWidth")
        assert width <= WIDTHS["mobile"] + 1


@pytest.mark.parametrize("label", sorted(WIDTHS))
def test_state_page_renders(server, probe, label):
    item = probe(WIDTHS[label])
    item.page.goto(server + "/state/TX")
    item.page.wait_for_load_state("networkidle")
    chart = item.page.locator('img[src="/-/ring/charts/monthly-joins.svg?state=TX"]')
    assert chart.evaluate("img => img.complete && img.naturalWidth > 0")
    assert "window.__xss=1" in item.page.inner_text("table")
    screenshot(item.page, f"state-{label}")
    assert_no_xss(item.page)
    assert item.errors == []


@pytest.mark.parametrize("label", sorted(WIDTHS))
def test_agencies_map_draws_markers(server, probe, label):
    item = probe(WIDTHS[label])
    item.page.goto(server + "/ring/agencies")
    markers = item.page.locator(".leaflet-marker-icon")
    markers.first.wait_for(timeout=15000)
    assert markers.count() >= 1
    screenshot(item.page, f"agencies-map-{label}")
    assert_no_xss(item.page)
    assert item.errors == []
    assert all(urlsplit(url).hostname != "127.0.0.1" for url in item.blocked)


def test_map_popup_escapes_name(server, probe):
    item = probe()
    item.page.goto(server + "/ring/agencies?id=44444444-4444-4444-8444-444444444444"
                   "&_col=name&_col=latitude&_col=longitude")
    marker = item.page.locator(".leaflet-marker-icon").first
    marker.wait_for(timeout=15000)
    marker.click()
    popup = item.page.locator(".leaflet-popup-content")
    popup.wait_for()
    assert "<script>window.__xss=1</script> Police Department" in popup.inner_text()
    assert_no_xss(item.page)
    assert item.errors == []


def test_map_view_popup_links_timeline(server, probe):
    item = probe()
    agency_id = "44444444-4444-4444-8444-444444444444"
    item.page.goto(server + f"/ring/agencies_map?id={agency_id}")
    marker = item.page.locator(".leaflet-marker-icon").first
    marker.wait_for(timeout=15000)
    marker.click()
    popup = item.page.locator(".leaflet-popup-content")
    popup.wait_for()
    text = popup.inner_text()
    assert "<script>window.__xss=1</script> Police Department" in text
    # This agency's source_url is a javascript: URL: shown as text, never linked.
    assert "Quartz Flats, TX | source: javascript:" in text
    links = [a.get_attribute("href") for a in popup.locator("a").all()]
    assert links == [f"/ring/agencies/{agency_id}"]
    assert_no_xss(item.page)
    assert item.errors == []


def test_search_finds_agency(server, probe):
    item = probe()
    item.page.goto(server + "/")
    item.page.fill("#ring-q", "Riverbend")
    item.page.keyboard.press("Enter")
    item.page.wait_for_url("**/search?q=Riverbend")
    assert "Riverbend Police Department" in item.page.inner_text("#search-results")
    item.page.goto(server + "/search?q=Quartz")
    assert "window.__xss=1" in item.page.inner_text("#search-results")
    assert_no_xss(item.page)
    assert item.errors == []


def test_row_page_and_keyboard(server, probe):
    item = probe()
    item.page.goto(server + "/ring/agencies/44444444-4444-4444-8444-444444444444")
    item.page.wait_for_load_state("networkidle")
    assert "window.__xss=1" in item.page.inner_text("h1")
    assert_no_xss(item.page)
    item.page.goto(server + "/")
    item.page.keyboard.press("Tab")
    focused = item.page.evaluate("document.activeElement.tagName")
    assert focused in ("A", "INPUT", "BUTTON", "SUMMARY")
    assert item.errors == []


# What the 2020 tracker's four libraries alone transfer, gzip-compressed:
# bulma.min.css 0.8.0 (25,401 bytes), jquery.min.js 3.4.1 (30,523),
# d3.min.js 5.15.0 (80,832) and moment.min.js 2.24.0 (17,066), as packed on
# npm and compressed with `gzip -9`. NOTE: these are the releases current in
# early 2020, not versions read off the tracker's pages, and the tracker
# also loaded every agency as JSON, so its real page weighed more than this.
TRACKER_2020_LIBRARIES_BYTES = 25_401 + 30_523 + 80_832 + 17_066


def test_home_transfer_under_2020_libraries(server, browser):
    context = browser.new_context(viewport={"width": WIDTHS["desktop"], "height": 900})
    page = context.new_page()
    responses = []
    page.on("response", lambda response: responses.append(response))
    try:
        page.goto(server + "/")
        page.wait_for_load_state("networkidle")
        hosts = {urlsplit(response.url).hostname for response in responses}
        transferred = 0
        for response in responses:
            sizes = response.request.sizes()
            transferred += sizes["responseHeadersSize"] + sizes["responseBodySize"]
    finally:
        context.close()
    assert hosts == {"127.0.0.1"}
    assert len(responses) >= 4  # the page, its stylesheet and two charts
    assert transferred < TRACKER_2020_LIBRARIES_BYTES


def test_no_request_leaves_localhost_except_tiles(server, probe):
    item = probe()
    item.page.goto(server + "/ring/agencies")
    item.page.locator(".leaflet-marker-icon").first.wait_for(timeout=15000)
    item.page.wait_for_timeout(500)
    hosts = {urlsplit(url).hostname for url in item.blocked}
    assert all(host.endswith("tile.openstreetmap.org") for host in hosts), hosts



MOBILE_PAGES = [
    "/", "/about", "/state/OR", "/state/TX", "/state/MN", "/search?q=Old+Mill,+AL",
    "/search?q=Atlantis", f"/ring/agencies/{LONG_URL_ID}",
    "/ring/agencies/pine-ridge-police-department-wa",
    "/ring/agencies/11111111-1111-4111-8111-111111111111",
    "/ring/agencies/44444444-4444-4444-8444-444444444444",
]


def page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


@pytest.mark.parametrize("path", MOBILE_PAGES)
def test_mobile_page_fits_width(server, probe, path):
    item = probe(WIDTHS["mobile"])
    item.page.goto(server + path)
    item.page.wait_for_load_state("networkidle")
    assert page_width(item.page) <= WIDTHS["mobile"]
    fields = item.page.locator("#all-fields")
    if fields.count():
        # The raw row, stacked into one card on narrow screens, must fit too.
        fields.locator("summary").click()
        assert fields.evaluate("details => details.open")
        assert page_width(item.page) <= WIDTHS["mobile"]
    assert item.errors == []


@pytest.mark.parametrize("label", sorted(WIDTHS))
def test_agency_page_answer_and_fields(server, probe, label):
    item = probe(WIDTHS[label])
    item.page.goto(server + f"/ring/agencies/{LONG_URL_ID}")
    item.page.wait_for_load_state("networkidle")
    answer = item.page.locator("#answer")
    assert "Reported as a Ring partner on 2019-12-06 by news.example.org" in answer.inner_text()
    table = item.page.locator("#all-fields table")
    assert not table.is_visible()
    answer_box = answer.bounding_box()
    item.page.locator("#all-fields summary").click()
    assert table.is_visible()
    assert answer_box["y"] < table.bounding_box()["y"]
    screenshot(item.page, f"agency-{label}")
    if label == "desktop":
        # Wider than the page, the table scrolls inside its wrapper instead.
        wrapper = item.page.locator("#all-fields .table-wrapper")
        assert wrapper.evaluate("el => el.scrollWidth > el.clientWidth")
        assert wrapper.evaluate("el => getComputedStyle(el).overflowX") == "auto"
    assert page_width(item.page) <= WIDTHS[label]
    assert item.errors == []


def test_state_page_mobile_cards_labelled(server, probe):
    item = probe(WIDTHS["mobile"])
    item.page.goto(server + "/state/OR")
    item.page.wait_for_load_state("networkidle")
    cell = item.page.locator('table.ring-cards td[data-label="Joined"]').first
    label = cell.evaluate("td => getComputedStyle(td, '::before').content")
    assert label == '"Joined"'
    assert page_width(item.page) <= WIDTHS["mobile"]


def test_menu_reaches_search(server, probe):
    item = probe()
    item.page.goto(server + "/ring/agencies")
    item.page.locator("details.nav-menu summary").click()
    item.page.locator("details.nav-menu").get_by_role("link", name="Search").click()
    item.page.wait_for_url("**/search")
    assert item.page.locator("h1").inner_text() == "Is my local agency a partner?"

"""Shared helpers for the scraper tests: captures, generated maps, git repos and the CLI."""

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from pytest_httpserver import HTTPServer

CAPTURES = Path(__file__).parent / "captures"
REPO_ROOT = Path(__file__).parent.parent
KML_TYPE = "application/vnd.google-earth.kml+xml"
KMZ_TYPE = "application/vnd.google-earth.kmz"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(scope="module")
def loopback_server():
    """An HTTP server on 127.0.0.1 with a free port, shared by the tests of one module."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def httpserver(loopback_server):
    """Replace pytest-httpserver's fixture so every request goes to 127.0.0.1, not "localhost"."""
    yield loopback_server
    loopback_server.clear()


def read_capture(name: str, **substitutions: str) -> bytes:
    """Return a capture's bytes with each {{KEY}} placeholder replaced by its value."""
    text = (CAPTURES / name).read_text(encoding="utf-8")
    for key, value in substitutions.items():
        text = text.replace("{{" + key + "}}", value)
    return text.encode("utf-8")


def make_kml(rows: list[dict]) -> bytes:
    """Build a My Maps style export with one folder; each row has name, address and optional
    active_date, profile_url and coordinates."""
    placemarks = []
    for row in rows:
        data = ""
        if "active_date" in row:
            data += f'<Data name="Active Date"><value>{escape(row["active_date"])}</value></Data>'
        if "profile_url" in row:
            data += f'<Data name="Agency Profile"><value>{escape(row["profile_url"])}</value></Data>'
        point = ""
        if "coordinates" in row:
            point = f"<Point><coordinates>{row['coordinates']}</coordinates></Point>"
        placemarks.append(
            f"      <Placemark>\n"
            f"        <name>{escape(row['name'])}</name>\n"
            f"        <address>{escape(row['address'])}</address>\n"
            f"        <ExtendedData>{data}</ExtendedData>{point}\n"
            f"      </Placemark>\n"
        )
    document = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<kml xmlns="http://www.opengis.net/kml/2.2">\n'
        "  <Document>\n    <name>Active Agency Map</name>\n    <Folder>\n      <name>Active Agencies</name>\n"
        + "".join(placemarks)
        + "    </Folder>\n  </Document>\n</kml>\n"
    )
    return document.encode("utf-8")


def numbered_agencies(count: int, start: int = 1) -> list[dict]:
    return [
        {"name": f"Testville {number} Police Department", "address": f"Testville {number}, OH", "active_date": "5/1/2020"}
        for number in range(start, start + count)
    ]


def make_kmz(kml: bytes, entry_name: str = "doc.kml", extra_entries: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(entry_name, kml)
        for name, data in (extra_entries or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def clean_env(**extra: str) -> dict[str, str]:
    """Return an environment for subprocesses that reaches 127.0.0.1 directly and imports this checkout."""
    # GIT_* variables set by other fixtures would override the repository's own identity.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in PROXY_VARIABLES and not key.startswith("GIT_")
    }
    env.pop("RING_MAP_URL", None)
    env.pop("GITHUB_REPOSITORY", None)
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env


def run_scrape(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `python -m ringtracker scrape ARGS` in ``cwd`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "ringtracker", "scrape", "--retry-backoff", "0", *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def git(repo: Path, *args: str) -> str:
    completed = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return completed.stdout


def make_git_repo(path: Path) -> Path:
    """Create an empty git repository with a local identity, as the scheduled workflow sets it."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "config", "user.name", "Scraper Bot")
    git(path, "config", "user.email", "scraper@example.invalid")
    git(path, "config", "commit.gpgsign", "false")
    return path


def commit_count(repo: Path) -> int:
    try:
        return int(git(repo, "rev-list", "--count", "HEAD").strip())
    except subprocess.CalledProcessError:
        return 0


# The exact records normalize makes from map-2021.kml, in document order.
EXPECTED_2021 = [
    {
        "id": "0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b",
        "name": "Lakeview Police Department",
        "agency_type": "police",
        "address": "Lakeview, MI",
        "city": "Lakeview",
        "state": "MI",
        "latitude": 42.6064095,
        "longitude": -83.1497751,
        "active_date": "2019-06-04",
        "video_requests": None,
        "profile_url": "https://agency.ring.com/agencies/0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b",
        "extra": {},
    },
    {
        "id": "7c1d9e2b-5a4f-4b3c-9d8e-2f1a0b9c8d7e",
        "name": "Pine Hollow County Sheriff's Office",
        "agency_type": "sheriff",
        "address": "Pine Hollow, Kentucky",
        "city": "Pine Hollow",
        "state": "KY",
        "latitude": 38.0405837,
        "longitude": -84.5037164,
        "active_date": "2020-01-15",
        "video_requests": None,
        "profile_url": "https://agency.ring.com/agencies/7C1D9E2B-5A4F-4B3C-9D8E-2F1A0B9C8D7E",
        "extra": {},
    },
    {
        "id": "3e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b",
        "name": "Cedar Falls Fire Department",
        "agency_type": "fire",
        "address": "Cedar Falls, North Carolina",
        "city": "Cedar Falls",
        "state": "NC",
        "latitude": 35.7595731,
        "longitude": -79.0192997,
        "active_date": "2021-03-03",
        "video_requests": None,
        "profile_url": "https://agency.ring.com/agencies/3e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b",
        "extra": {},
    },
    {
        "id": "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        "name": "Harbor Town Police & Fire Department",
        "agency_type": "police",
        "address": "Harbor Town, TX",
        "city": "Harbor Town",
        "state": "TX",
        "latitude": 29.7604267,
        "longitude": -95.3698028,
        "active_date": "2020-11-23",
        "video_requests": None,
        "profile_url": "https://agency.ring.com/agencies/9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        "extra": {"Notes": "Joined with the <county> task force & EMS"},
    },
    {
        "id": "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a",
        "name": "Millbrook Township Police Department",
        "agency_type": "police",
        "address": "Millbrook Township, Oakland County, MI",
        "city": "Millbrook Township",
        "state": "MI",
        "latitude": None,
        "longitude": None,
        "active_date": "2021-08-30",
        "video_requests": None,
        "profile_url": "https://agency.ring.com/agencies/5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a",
        "extra": {},
    },
]

# The exact records normalize makes from map-2020-direct.kml, in document order.
EXPECTED_2020 = [
    {
        "id": "lakeview-police-department-mi",
        "name": "Lakeview Police Department",
        "agency_type": "police",
        "address": "Lakeview, MI",
        "city": "Lakeview",
        "state": "MI",
        "latitude": 42.6064095,
        "longitude": -83.1497751,
        "active_date": "2019-06-04",
        "video_requests": 12,
        "profile_url": None,
        "extra": {},
    },
    {
        "id": "brookside-police-department-tx",
        "name": "Brookside Police Department",
        "agency_type": "police",
        "address": "Brookside, Texas",
        "city": "Brookside",
        "state": "TX",
        "latitude": 30.267153,
        "longitude": -97.7430608,
        "active_date": "2020-01-15",
        "video_requests": 0,
        "profile_url": None,
        "extra": {},
    },
    {
        "id": "oakmont-county-sheriffs-department-tx",
        "name": "Oakmont County Sheriff’s Department",
        "agency_type": "sheriff",
        "address": "Oakmont, tx",
        "city": "Oakmont",
        "state": "TX",
        "latitude": 32.7766642,
        "longitude": -96.7969879,
        "active_date": "2019-12-31",
        "video_requests": 1204,
        "profile_url": None,
        "extra": {},
    },
    {
        "id": "willow-creek-department-of-public-safety-ca",
        "name": "Willow Creek Department of Public Safety",
        "agency_type": "police",
        "address": "Willow Creek, CA",
        "city": "Willow Creek",
        "state": "CA",
        "latitude": 38.5815719,
        "longitude": -121.4943996,
        "active_date": "2020-07-01",
        "video_requests": None,
        "profile_url": None,
        "extra": {},
    },
]

"""A short run of loadtest/load.py against a real datasette server on the test database."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.site_db import build_site_db

ROOT = Path(__file__).resolve().parent.parent


def load_module():
    spec = importlib.util.spec_from_file_location("loadtest_load", ROOT / "loadtest" / "load.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


load = load_module()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    # The file must be called ring.db: the pages and canned queries live under /ring.
    db = build_site_db(tmp_path_factory.mktemp("load") / "ring.db")
    with load.datasette_server(db) as base:
        yield base


def test_short_load_has_no_errors_and_slow_query_is_cut_off(site):
    report = load.run_load(site, seconds=3, clients=6, max_requests=2000)

    assert report.errors == []
    assert len(report.samples) > 20
    kinds = {load.page_kind(sample.path) for sample in report.samples}
    assert {"home", "agencies table", "agencies facets", "search", "agency timeline", "state page",
            "atom new joins", "atom departures", "sql page", "canned query"} <= kinds
    slow = report.slow_query
    assert slow.status == 400, slow.message
    assert slow.cut_off, slow.message
    assert slow.seconds < 5
    assert slow.concurrent_ok > 0
    assert slow.concurrent_failed == 0
    assert report.passed()
    assert "errors: 0" in report.lines()[0]


def test_request_budget_bounds_the_run(site):
    report = load.run_load(site, seconds=30, clients=4, max_requests=12, check_slow=False)

    assert len(report.samples) == 12
    assert report.wall_seconds < 30


def test_atom_feeds_are_atom(site):
    report = load.run_load(site, seconds=30, clients=1, max_requests=10, check_slow=False)

    feeds = [sample for sample in report.samples if sample.path.endswith(".atom")]
    assert len(feeds) == 2 and all(sample.ok for sample in feeds)


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8001", "http://10.0.0.1:8001", "https://127.0.0.1:8001", "http://127.0.0.1.example.org/"],
)
def test_refuses_hosts_other_than_loopback(url):
    with pytest.raises(ValueError, match="only http://127.0.0.1 URLs are allowed"):
        load.check_local_url(url)

    completed = subprocess.run(
        [sys.executable, str(ROOT / "loadtest" / "load.py"), "--url", url, "--seconds", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 2
    assert "Refusing to load-test" in completed.stderr


def test_serve_flags_match_make_serve(tmp_path):
    flags = load.serve_flags(tmp_path / "ring.db")

    assert flags[:2] == ["-i", str(tmp_path / "ring.db")]
    assert "sql_time_limit_ms" in flags
    assert "--plugins-dir" in flags

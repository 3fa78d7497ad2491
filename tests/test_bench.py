"""The benchmark scripts on tiny histories: each step runs and reports, figures unchecked."""

import json
import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from bench import make_history
from bench.load import datasette_server, find_wrk, load_pages, serve_flags
from bench.run import measure_floor, run_measured
from ringtracker.write import serialize
from tests.conftest import PROJECT_ROOT
from tests.site_db import build_site_db

COMMITS = 5
START, END = 20, 24


def generate(tmp_path, profile="busy", seed=7, name="repo"):
    return make_history.generate(
        tmp_path / name, make_history.PROFILES[profile], COMMITS, START, END,
        seed=seed, slice_commits=3,
    )


def git(repo, *args):
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def versions(repo, ref=make_history.BRANCH):
    """Return (commit date, parsed records, raw bytes) of every version on `ref`, oldest first."""
    listing = git(repo, "log", "--reverse", "--format=%H %cI", ref, "--", make_history.MAP_PATH)
    result = []
    for line in listing.splitlines():
        commit, date = line.split()
        raw = subprocess.run(
            ["git", "-C", str(repo), "show", f"{commit}:{make_history.MAP_PATH}"],
            check=True, capture_output=True,
        ).stdout
        result.append((datetime.fromisoformat(date), json.loads(raw), raw))
    return result


def test_history_matches_scraper_format(tmp_path):
    history = generate(tmp_path)
    found = versions(history.path)

    assert len(found) == COMMITS
    for _, records, raw in found:
        assert raw == serialize(records)
    assert len(found[0][1]) == START
    assert len(found[-1][1]) == END


def test_history_one_commit_per_day(tmp_path):
    dates = [date for date, _, _ in versions(generate(tmp_path).path)]

    assert dates[0] == datetime.fromisoformat(make_history.PROFILES["busy"].start_date)
    for earlier, later in zip(dates, dates[1:]):
        assert later - earlier == timedelta(days=1)


def test_history_record_fields(tmp_path):
    _, records, _ = versions(generate(tmp_path).path)[-1]

    for record in records:
        assert sorted(record) == [
            "active_date", "address", "agency_type", "city", "extra", "id", "latitude",
            "longitude", "name", "profile_url", "state", "video_requests",
        ]
        assert record["address"] == f"{record['city']}, {record['state']}"
        assert record["profile_url"].endswith(record["id"])
        assert isinstance(record["video_requests"], int)


def test_busy_profile_changes_counts(tmp_path):
    found = versions(generate(tmp_path).path)

    totals = [sum(r["video_requests"] for r in records) for _, records, _ in found]
    assert totals[-1] > totals[0]


def test_quiet_profile_has_no_counts(tmp_path):
    found = versions(generate(tmp_path, profile="quiet").path)

    for _, records, _ in found:
        assert {record["video_requests"] for record in records} == {None}


def test_history_is_reproducible(tmp_path):
    first = generate(tmp_path, name="first")
    second = generate(tmp_path, name="second")
    other_seed = generate(tmp_path, seed=8, name="other")

    assert git(first.path, "rev-parse", "main") == git(second.path, "rev-parse", "main")
    assert git(first.path, "rev-parse", "main") != git(other_seed.path, "rev-parse", "main")


def test_slice_and_next_refs(tmp_path):
    repo = generate(tmp_path).path

    assert git(repo, "rev-list", "--count", make_history.SLICE_REF).strip() == "3"
    assert git(repo, "rev-parse", f"{make_history.NEXT_REF}~1") == git(repo, "rev-parse", "main")


def test_advance_branch_adds_one_commit(tmp_path):
    repo = generate(tmp_path).path
    next_commit = make_history.advance_branch(repo)

    assert git(repo, "rev-parse", "main").strip() == next_commit
    assert git(repo, "rev-list", "--count", "main").strip() == str(COMMITS + 1)
    assert json.loads((repo / make_history.MAP_PATH).read_text()) == versions(repo)[-1][1]


def test_generate_rejects_bad_counts(tmp_path):
    with pytest.raises(ValueError, match="start <= end"):
        make_history.generate(tmp_path / "repo", make_history.PROFILES["busy"], 5, 30, 20)


def test_floor_reads_every_version(tmp_path):
    seconds, count = measure_floor(generate(tmp_path).path)

    assert count == COMMITS
    assert seconds > 0


def test_run_measured_sees_child_memory(tmp_path):
    # The grandchild allocates 100 MB; both measures must include it.
    allocate = "import time; block = bytearray(100 * 2**20); time.sleep(1)"
    command = [sys.executable, "-c",
               f"import subprocess, sys; subprocess.run([sys.executable, '-c', {allocate!r}])"]
    result = run_measured(command, tmp_path / "out.log")

    assert result.max_rss_bytes >= 100 * 2**20
    assert result.peak_tree_rss_bytes >= 100 * 2**20


def test_run_measured_reports_failure(tmp_path):
    command = [sys.executable, "-c", "import sys; print('broken step'); sys.exit(3)"]

    with pytest.raises(RuntimeError, match="status 3") as error:
        run_measured(command, tmp_path / "out.log")
    assert "broken step" in str(error.value)


def test_serve_flags_use_given_database(tmp_path):
    db_path = tmp_path / "ring.db"

    assert str(db_path) in serve_flags(db_path)


@pytest.mark.skipif(find_wrk() is None, reason="wrk is not installed (apt-get install wrk)")
def test_wrk_measures_a_page(tmp_path):
    db_path = build_site_db(tmp_path / "ring.db")
    with datasette_server(serve_flags(db_path), tmp_path / "datasette.log") as base_url:
        results = load_pages(base_url, {"home": "/", "missing": "/ring/no_such_table"},
                             concurrency=2, max_requests=0, time_limit=1, client="wrk")

    home, missing = results
    assert home.client == "wrk"
    assert home.requests > 0
    assert home.errors == []
    assert 0 < home.percentile_ms(50) <= home.percentile_ms(95) <= home.percentile_ms(99)
    assert missing.errors[0].endswith("responses were not 2xx or 3xx")


def test_httpx_measures_a_page(tmp_path):
    db_path = build_site_db(tmp_path / "ring.db")
    with datasette_server(serve_flags(db_path), tmp_path / "datasette.log") as base_url:
        (home,) = load_pages(base_url, {"home": "/"}, concurrency=2, max_requests=6,
                             time_limit=5, client="httpx")

    assert home.client == "httpx"
    assert home.requests == 6
    assert home.errors == []
    assert 0 < home.percentile_ms(50) <= home.percentile_ms(95) <= home.percentile_ms(99)


def test_run_prints_every_figure(tmp_path):
    command = [
        sys.executable, "-m", "bench.run",
        "--commits", str(COMMITS), "--start-agencies", str(START), "--end-agencies", str(END),
        "--slice-commits", "3", "--concurrency", "4", "--requests", "8", "--seconds", "1",
        "--workdir", str(tmp_path / "work"),
    ]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]

    lines = result.stdout.splitlines()
    figures = dict(line.split(" ", 1) for line in lines[lines.index("Figures") + 1:])
    for name in (
        "full_build_vs_git_history", "full_build_vs_floor", "incremental_seconds",
        "home_p95_vs_plain_table", "build_peak_rss_mb",
    ):
        float(figures[name])
    for profile in ("busy", "quiet"):
        for page in ("home", "facets", "timeline", "plain_table"):
            for name in (page, f"{page}_uncached"):
                float(figures[f"{profile}_{name}_p95_ms"])
                assert figures[f"{profile}_{name}_errors"] == "0", result.stderr[-3000:]
        assert figures[f"{profile}_incremental_rebuilt"] == "0"
        float(figures[f"{profile}_db_size_mb"])
        float(figures[f"{profile}_floor_seconds"])

import json
import subprocess
import time

import pytest
from werkzeug import Response

from ringtracker import cli
from ringtracker.errors import SourceError
from ringtracker.fetch import FetchOptions, make_session
from ringtracker.kml import parse
from ringtracker.normalize import normalize
from ringtracker.profiles import ProfileOptions, ProfileStats, RateLimiter, fetch_profile
from ringtracker.scrape import RecordDiff, build_commit_message, diff_records
from ringtracker.write import serialize, write
from tests.helpers_scrape import (  # noqa: F401 (fixtures)
    EXPECTED_2021,
    KML_TYPE,
    REPO_ROOT,
    clean_env,
    commit_count,
    git,
    httpserver,
    loopback_server,
    make_git_repo,
    make_kml,
    numbered_agencies,
    read_capture,
    run_scrape,
)

OUTPUT = "data/agencies.json"
TARGET_PATH = "/maps/d/kml"


def records_for(count):
    return normalize(parse(make_kml(numbered_agencies(count)))).records


def serve(httpserver, path, data, content_type=KML_TYPE, status=200):
    httpserver.expect_request(path).respond_with_data(data, content_type=content_type, status=status)
    return httpserver.url_for(path)


def serve_wrapper(httpserver, target=None):
    root = httpserver.url_for("/").rstrip("/")
    serve(httpserver, TARGET_PATH, target if target is not None else read_capture("map-2021.kml"))
    return serve(httpserver, "/wrapper.kml", read_capture("wrapper.kml", SERVER=root))


@pytest.fixture
def repo(tmp_path):
    path = make_git_repo(tmp_path / "tracker")
    (path / "data").mkdir()
    return path


@pytest.fixture
def seeded(repo):
    """A repository whose data file already contains the 2021 capture's records."""
    (repo / OUTPUT).write_bytes(serialize(EXPECTED_2021))
    return repo


def assert_failed_unchanged(completed, repo, before, message):
    assert completed.returncode != 0, completed.stderr
    assert message in completed.stderr
    assert (repo / OUTPUT).read_bytes() == before


# Successful runs


def test_scrape_wrapper_writes_exact_file(repo, httpserver):
    url = serve_wrapper(httpserver)

    completed = run_scrape(repo, "--url", url)

    assert completed.returncode == 0, completed.stderr
    assert (repo / OUTPUT).read_bytes() == serialize(EXPECTED_2021)
    assert f"Fetched {url} at " in completed.stderr
    assert ": 5 placemarks, 5 agencies (+5, -0, 0 changed); data/agencies.json updated" in completed.stderr


def test_written_file_format(repo, httpserver):
    url = serve(httpserver, "/map.kml", read_capture("map-2020-direct.kml"))

    run_scrape(repo, "--url", url)

    text = (repo / OUTPUT).read_text(encoding="utf-8")
    records = json.loads(text)
    assert [record["id"] for record in records] == sorted(record["id"] for record in records)
    assert text.endswith("}\n]\n")
    assert '\n  {\n    "active_date": "2020-01-15",\n    "address": "Brookside, Texas",' in text
    assert '"name": "Oakmont County Sheriff’s Department"' in text
    assert all(list(record) == sorted(record) for record in records)


def test_unchanged_map_gives_identical_bytes(repo, httpserver):
    url = serve_wrapper(httpserver)
    run_scrape(repo, "--url", url)
    first = (repo / OUTPUT).read_bytes()

    completed = run_scrape(repo, "--url", url)

    assert completed.returncode == 0
    assert (repo / OUTPUT).read_bytes() == first
    assert "data/agencies.json unchanged" in completed.stderr


def test_scrape_local_archive_and_env_url(repo, tmp_path):
    archive = tmp_path / "archive-2020.kml"
    archive.write_bytes(read_capture("map-2020-direct.kml"))

    completed = run_scrape(repo, env=clean_env(RING_MAP_URL=str(archive)))

    assert completed.returncode == 0, completed.stderr
    assert len(json.loads((repo / OUTPUT).read_text())) == 4
    assert f"Fetched {archive} at " in completed.stderr


def test_http_500_then_success(seeded, httpserver):
    httpserver.expect_oneshot_request("/map.kml").respond_with_data("busy", status=500)
    url = serve(httpserver, "/map.kml", read_capture("map-2020-direct.kml"))

    completed = run_scrape(seeded, "--url", url, "--retries", "2", "--allow-shrink")

    assert completed.returncode == 0, completed.stderr
    assert [response.status_code for _, response in httpserver.log] == [500, 200]
    assert len(json.loads((seeded / OUTPUT).read_text())) == 4


def test_allow_shrink_accepts_large_drop(repo, tmp_path):
    big = tmp_path / "big.kml"
    big.write_bytes(make_kml(numbered_agencies(10)))
    small = tmp_path / "small.kml"
    small.write_bytes(make_kml(numbered_agencies(5)))
    run_scrape(repo, "--url", str(big))

    completed = run_scrape(repo, "--url", str(small), "--allow-shrink")

    assert completed.returncode == 0, completed.stderr
    assert len(json.loads((repo / OUTPUT).read_text())) == 5
    assert "50% fewer than the 10" in completed.stderr


def test_one_failing_row_in_two_hundred_dropped(repo, tmp_path):
    rows = numbered_agencies(199) + [{"name": "Riverside Police Department", "address": "Riverside, Springfield"}]
    path = tmp_path / "map.kml"
    path.write_bytes(make_kml(rows))

    completed = run_scrape(repo, "--url", str(path))

    assert completed.returncode == 0, completed.stderr
    assert len(json.loads((repo / OUTPUT).read_text())) == 199
    assert "Dropped row: row 200 (Riverside Police Department): cannot resolve a US state" in completed.stderr


# The validation gate: each failure exits non-zero and keeps the data file's bytes.


def test_gate_empty_body(seeded, httpserver):
    before = (seeded / OUTPUT).read_bytes()
    url = serve(httpserver, "/map.kml", b"")

    completed = run_scrape(seeded, "--url", url)

    assert_failed_unchanged(completed, seeded, before, "returned an empty document")


def test_gate_html_error_page_with_status_200(seeded, httpserver):
    before = (seeded / OUTPUT).read_bytes()
    url = serve(httpserver, "/map.kml", read_capture("error-page.html"), content_type="application/vnd.google-earth.kml+xml")

    completed = run_scrape(seeded, "--url", url)

    assert_failed_unchanged(completed, seeded, before, "returned an HTML page instead of KML or KMZ")


def test_gate_html_content_type(seeded, httpserver):
    before = (seeded / OUTPUT).read_bytes()
    url = serve(httpserver, "/map.kml", read_capture("error-page.html"), content_type="text/html; charset=UTF-8")

    completed = run_scrape(seeded, "--url", url)

    assert_failed_unchanged(completed, seeded, before, "returned Content-Type 'text/html' instead of KML or KMZ")


def test_gate_truncated_xml(seeded, httpserver):
    before = (seeded / OUTPUT).read_bytes()
    url = serve(httpserver, "/map.kml", read_capture("truncated.kml"))

    completed = run_scrape(seeded, "--url", url)

    assert_failed_unchanged(completed, seeded, before, "The document is not well-formed XML (unclosed token: line 46")


def test_gate_zero_placemarks(seeded, httpserver):
    before = (seeded / OUTPUT).read_bytes()
    url = serve(httpserver, "/map.kml", read_capture("no-placemarks.kml"))

    completed = run_scrape(seeded, "--url", url)

    assert_failed_unchanged(completed, seeded, before, "The document contains no placemarks")


def test_gate_fifty_percent_drop(repo, httpserver):
    (repo / OUTPUT).write_bytes(serialize(records_for(10)))
    before = (repo / OUTPUT).read_bytes()
    url = serve(httpserver, "/map.kml", make_kml(numbered_agencies(5)))

    completed = run_scrape(repo, "--url", url)

    assert_failed_unchanged(
        completed, repo, before, "The snapshot has 5 agencies, 50% fewer than the 10 in the existing data file"
    )
    assert "run again with --allow-shrink" in completed.stderr


def test_gate_duplicate_ids(seeded, httpserver):
    before = (seeded / OUTPUT).read_bytes()
    url = serve(httpserver, "/map.kml", read_capture("duplicate-ids.kml"))

    completed = run_scrape(seeded, "--url", url)

    assert_failed_unchanged(completed, seeded, before, "1 id(s) are used by more than one row")
    assert "'Washington Township Police Department' at 'Washington Township, Franklin County, OH'" in completed.stderr
    assert "'Washington Township Police Department' at 'Washington Township, Montgomery County, OH'" in completed.stderr


def test_gate_failing_rows_over_one_percent(seeded, httpserver):
    before = (seeded / OUTPUT).read_bytes()
    url = serve(httpserver, "/map.kml", read_capture("states.kml"))

    completed = run_scrape(seeded, "--url", url)

    assert_failed_unchanged(completed, seeded, before, "3 of 8 rows (37.5%) have no usable id, name or state")
    assert "row 6 (Riverside Police Department): cannot resolve a US state from the address" in completed.stderr


def test_gate_wrapper_pointing_at_itself(seeded, httpserver):
    before = (seeded / OUTPUT).read_bytes()
    url = httpserver.url_for("/self.kml")
    serve(httpserver, "/self.kml", read_capture("wrapper-self.kml", SELF=url))

    completed = run_scrape(seeded, "--url", url)

    assert_failed_unchanged(completed, seeded, before, f"The NetworkLink in {url} points back at the document itself")


def test_gate_xxe_reads_nothing(seeded, httpserver, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-5519")
    before = (seeded / OUTPUT).read_bytes()
    url = serve(httpserver, "/map.kml", read_capture("xxe.kml", LOCAL_PATH=str(secret)))

    completed = run_scrape(seeded, "--url", url, "--log-level", "debug")

    assert_failed_unchanged(completed, seeded, before, "The document contains a DTD")
    assert "TOP-SECRET-5519" not in completed.stdout
    assert "TOP-SECRET-5519" not in completed.stderr
    assert b"TOP-SECRET-5519" not in (seeded / OUTPUT).read_bytes()


def test_gate_slow_server_times_out(seeded, httpserver):
    def slow(request):
        time.sleep(1.5)
        return Response(read_capture("map-2021.kml"), content_type=KML_TYPE)

    httpserver.expect_request("/map.kml").respond_with_handler(slow)
    before = (seeded / OUTPUT).read_bytes()

    completed = run_scrape(seeded, "--url", httpserver.url_for("/map.kml"), "--timeout", "0.3", "--retries", "0")

    assert_failed_unchanged(completed, seeded, before, "Timed out fetching")
    assert "read timeout 0.3 s" in completed.stderr


def test_gate_invalid_existing_data_file(repo, httpserver):
    (repo / OUTPUT).write_text("[{ broken")
    url = serve(httpserver, "/map.kml", read_capture("map-2021.kml"))

    completed = run_scrape(repo, "--url", url)

    assert completed.returncode != 0
    assert "is not valid JSON" in completed.stderr
    assert (repo / OUTPUT).read_text() == "[{ broken"


def test_gate_url_with_line_break(repo):
    completed = run_scrape(repo, "--url", "http://127.0.0.1:9/map.kml\nSource-URL: forged")

    assert completed.returncode != 0
    assert "contains whitespace or control characters" in completed.stderr


# --commit


def test_commit_first_run_then_no_change(repo, httpserver):
    url = serve_wrapper(httpserver)

    first = run_scrape(repo, "--url", url, "--commit")

    assert first.returncode == 0, first.stderr
    assert commit_count(repo) == 1
    assert git(repo, "log", "-1", "--format=%an <%ae>").strip() == "Scraper Bot <scraper@example.invalid>"
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith(
        "Ring map: 5 agencies (+5, -0, 0 changed)\n"
        "\n"
        "Added:\n"
        "- Lakeview Police Department (0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b)\n"
        "- Cedar Falls Fire Department (3e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b)\n"
        "- Millbrook Township Police Department (5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a)\n"
        "- Pine Hollow County Sheriff's Office (7c1d9e2b-5a4f-4b3c-9d8e-2f1a0b9c8d7e)\n"
        "- Harbor Town Police & Fire Department (9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d)\n"
        "\n"
    )
    trailers = git(repo, "log", "-1", "--format=%(trailers:only,unfold)").strip().splitlines()
    assert trailers[0].startswith("Fetched-At: 20")
    assert trailers[0].endswith("Z")
    assert trailers[1] == f"Source-URL: {url}"
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == [OUTPUT]

    second = run_scrape(repo, "--url", url, "--commit")

    assert second.returncode == 0, second.stderr
    assert commit_count(repo) == 1
    assert "No change in data/agencies.json since the last commit; nothing to commit" in second.stderr


def test_commit_changed_map_summary(repo, httpserver):
    rows = [
        {"name": "Lakeview Police Department", "address": "Lakeview, MI", "active_date": "6/4/2019"},
        {"name": "Brookside Police Department", "address": "Brookside, TX", "active_date": "1/15/2020"},
        {"name": "Cedar Falls Fire Department", "address": "Cedar Falls, NC", "active_date": "3/3/2021"},
    ]
    serve(httpserver, "/v1.kml", make_kml(rows))
    changed_rows = [
        dict(rows[0], active_date="6/5/2019", coordinates="-83.1,42.6"),
        rows[2],
        {"name": "Fairview Police Department", "address": "Fairview, OR", "active_date": "2/2/2022"},
    ]
    serve(httpserver, "/v2.kml", make_kml(changed_rows))
    run_scrape(repo, "--url", httpserver.url_for("/v1.kml"), "--commit")

    completed = run_scrape(repo, "--url", httpserver.url_for("/v2.kml"), "--commit")

    assert completed.returncode == 0, completed.stderr
    assert commit_count(repo) == 2
    message = git(repo, "log", "-1", "--format=%B")
    body, trailers = message.rstrip("\n").rsplit("\n\n", 1)
    assert body == (
        "Ring map: 3 agencies (+1, -1, 1 changed)\n"
        "\n"
        "Added:\n"
        "- Fairview Police Department (fairview-police-department-or)\n"
        "\n"
        "Removed:\n"
        "- Brookside Police Department (brookside-police-department-tx)\n"
        "\n"
        "Changed:\n"
        "- Lakeview Police Department (lakeview-police-department-mi): active_date, latitude, longitude"
    )
    assert trailers.splitlines()[1] == f"Source-URL: {httpserver.url_for('/v2.kml')}"
    assert "(+1, -1, 1 changed)" in completed.stderr


def test_commit_after_uncommitted_write(repo, httpserver):
    # A file written by an earlier run without --commit still gets committed.
    url = serve(httpserver, "/map.kml", read_capture("map-2020-direct.kml"))
    run_scrape(repo, "--url", url)

    completed = run_scrape(repo, "--url", url, "--commit")

    assert completed.returncode == 0, completed.stderr
    assert commit_count(repo) == 1
    assert git(repo, "log", "-1", "--format=%s").strip() == "Ring map: 4 agencies (+4, -0, 0 changed)"


def test_commit_leaves_other_staged_files_alone(repo, httpserver):
    (repo / "notes.txt").write_text("draft")
    git(repo, "add", "notes.txt")
    url = serve(httpserver, "/map.kml", read_capture("map-2020-direct.kml"))

    run_scrape(repo, "--url", url, "--commit")

    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == [OUTPUT]
    assert "A  notes.txt" in git(repo, "status", "--porcelain")


def test_commit_outside_git_repository_fails(tmp_path, httpserver):
    (tmp_path / "data").mkdir()
    url = serve(httpserver, "/map.kml", read_capture("map-2020-direct.kml"))

    completed = run_scrape(tmp_path, "--url", url, "--commit", env=clean_env(GIT_CEILING_DIRECTORIES=str(tmp_path.parent)))

    assert completed.returncode != 0
    assert "git rev-parse --show-toplevel failed" in completed.stderr


def test_commit_message_caps_long_lists():
    added = [{"id": f"agency-{number:03d}", "name": f"Testville {number} Police Department"} for number in range(30)]

    message = build_commit_message(RecordDiff(added=added, removed=[], changed=[]), 2614, "2024-05-01T12:00:00Z", "http://127.0.0.1:9/map.kml")

    lines = message.splitlines()
    assert lines[0] == "Ring map: 2,614 agencies (+30, -0, 0 changed)"
    assert lines[2] == "Added:"
    assert lines[3] == "- Testville 0 Police Department (agency-000)"
    assert lines[28] == "- ... and 5 more"
    assert lines[-2:] == ["Fetched-At: 2024-05-01T12:00:00Z", "Source-URL: http://127.0.0.1:9/map.kml"]


def test_diff_records_lists_changed_fields():
    old = [{"id": "a", "name": "A", "video_requests": 3}, {"id": "b", "name": "B"}]
    new = [{"id": "a", "name": "A", "video_requests": 0}, {"id": "c", "name": "C"}]

    diff = diff_records(old, new)

    assert [record["id"] for record in diff.added] == ["c"]
    assert [record["id"] for record in diff.removed] == ["b"]
    assert [(record["id"], fields) for record, fields in diff.changed] == [("a", ["video_requests"])]
    assert diff.summary == "+1, -1, 1 changed"


# Writing


def test_write_is_atomic_and_reports_change(tmp_path):
    path = tmp_path / "data" / "agencies.json"

    assert write(EXPECTED_2021, path) is True
    assert write(list(reversed(EXPECTED_2021)), path) is False
    assert path.read_bytes() == serialize(EXPECTED_2021)
    assert [entry.name for entry in path.parent.iterdir()] == ["agencies.json"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_serialize_keeps_non_ascii():
    data = serialize([{"id": "a", "name": "Cañon Police Department"}])

    assert data == '[\n  {\n    "id": "a",\n    "name": "Cañon Police Department"\n  }\n]\n'.encode("utf-8")


# The command line and scrape.sh


def test_every_option_has_help():
    for parameter in cli.scrape_command.params:
        assert parameter.help, parameter.name


def test_help_lists_options():
    completed = subprocess.run(
        [".venv/bin/python", "-m", "ringtracker", "scrape", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, env=clean_env()
    )

    assert completed.returncode == 0
    for option in ("--url", "--output", "--allow-shrink", "--commit", "--with-profiles", "--log-level", "--timeout", "--retries"):
        assert option in completed.stdout


def test_scrape_sh_runs_from_any_directory(tmp_path):
    archive = tmp_path / "map.kml"
    archive.write_bytes(read_capture("map-2021.kml"))
    output = tmp_path / "out" / "agencies.json"

    completed = subprocess.run(
        ["bash", str(REPO_ROOT / "scrape.sh"), "--url", str(archive), "--output", str(output)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=clean_env(),
    )

    assert completed.returncode == 0, completed.stderr
    assert output.read_bytes() == serialize(EXPECTED_2021)


def test_scrape_sh_passes_failure_exit_code(tmp_path):
    completed = subprocess.run(
        ["bash", str(REPO_ROOT / "scrape.sh"), "--url", str(tmp_path / "missing.kml"), "--output", str(tmp_path / "a.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=clean_env(),
    )

    assert completed.returncode == 1
    assert "File not found" in completed.stderr


# Profile enrichment


def profile_rows(httpserver):
    return [
        {
            "name": "Lakeview Police Department",
            "address": "Lakeview, MI",
            "profile_url": httpserver.url_for("/agencies/0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b"),
        },
        {
            "name": "Brookside Police Department",
            "address": "Brookside, TX",
            "profile_url": httpserver.url_for("/agencies/7c1d9e2b-5a4f-4b3c-9d8e-2f1a0b9c8d7e"),
        },
        {"name": "Cedar Falls Fire Department", "address": "Cedar Falls, NC"},
    ]


def test_with_profiles_writes_separate_file(repo, httpserver, tmp_path):
    serve(httpserver, "/agencies/0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b", read_capture("profile-page.html"), content_type="text/html")
    serve(httpserver, "/agencies/7c1d9e2b-5a4f-4b3c-9d8e-2f1a0b9c8d7e", "gone", status=404)
    url = serve(httpserver, "/map.kml", make_kml(profile_rows(httpserver)))

    completed = run_scrape(
        repo, "--url", url, "--with-profiles", "--profile-delay", "0", "--profile-cache", str(tmp_path / "cache"), "--commit"
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads((repo / "data" / "profiles.json").read_text()) == {
        "lakeview-police-department-mi": {
            "posts": {"Animals": 0, "Community": 25, "Crime": 7, "Environmental": 3, "Request For Assistance": 42, "Safety": 12},
            "profile_url": profile_rows(httpserver)[0]["profile_url"],
            "total_video_requests": 1318,
        }
    }
    assert "Skipped profile of Brookside Police Department (brookside-police-department-tx)" in completed.stderr
    assert "Total Video Requests" not in (repo / OUTPUT).read_text()
    assert sorted(git(repo, "show", "--name-only", "--format=", "HEAD").split()) == [OUTPUT, "data/profiles.json"]


def test_profile_failure_never_blocks_snapshot(repo, httpserver, tmp_path):
    url = serve(httpserver, "/map.kml", make_kml(profile_rows(httpserver)))
    # A directory where the profiles file should go makes the whole step fail.
    (repo / "data" / "profiles.json").mkdir()

    completed = run_scrape(repo, "--url", url, "--with-profiles", "--profile-delay", "0", "--profile-cache", str(tmp_path / "cache"))

    assert completed.returncode == 0, completed.stderr
    assert "Profile enrichment failed; the agency snapshot is kept without it" in completed.stderr
    assert len(json.loads((repo / OUTPUT).read_text())) == 3


def test_fetch_profile_extracts_counts_and_caches(httpserver, tmp_path):
    url = serve(httpserver, "/agencies/one", read_capture("profile-page.html"), content_type="text/html")
    options = ProfileOptions(delay=0, cache_dir=tmp_path / "cache", fetch_options=FetchOptions(retries=0))
    session = make_session(options.fetch_options)

    first = fetch_profile(url, options, session)
    second = fetch_profile(url, options, session)

    expected = ProfileStats(
        total_video_requests=1318,
        posts={"Request For Assistance": 42, "Crime": 7, "Safety": 12, "Animals": 0, "Environmental": 3, "Community": 25},
    )
    assert first == expected
    assert second == expected
    assert len(httpserver.log) == 1


def test_fetch_profile_without_counts_fails(httpserver, tmp_path):
    url = serve(httpserver, "/agencies/blank", "<html><body><div id=app></div></body></html>", content_type="text/html")
    options = ProfileOptions(delay=0, cache_dir=tmp_path / "cache", fetch_options=FetchOptions(retries=0))

    with pytest.raises(SourceError, match="contains neither 'Total Video Requests' nor any post category count"):
        fetch_profile(url, options, make_session(options.fetch_options))


def test_rate_limiter_spaces_requests():
    limiter = RateLimiter(0.2)

    started = time.monotonic()
    for _ in range(3):
        limiter.wait()

    assert time.monotonic() - started >= 0.4

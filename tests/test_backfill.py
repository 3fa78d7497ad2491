"""Backfill of dated archived captures into a real git repository, then a real build of it."""

import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import pytest
import sqlite_utils

from ringtracker.backfill import BackfillError, backfill, capture_date, find_captures
from ringtracker.build import build
from tests.helpers_scrape import CAPTURES, clean_env, git, make_git_repo, make_kmz

KML_NAMESPACE = "http://www.opengis.net/kml/2.2"
DATA_FILE = "data/agencies.json"
CEDAR_FALLS = "Cedar Falls Fire Department"
PINE_HOLLOW = "Pine Hollow County Sheriff's Office"
LAKEVIEW = "Lakeview Police Department"


def capture_without(*names: str) -> bytes:
    """Return map-2021.kml with the placemarks of ``names`` removed."""
    ET.register_namespace("", KML_NAMESPACE)
    tree = ET.parse(CAPTURES / "map-2021.kml")
    for folder in tree.getroot().iter(f"{{{KML_NAMESPACE}}}Folder"):
        for placemark in list(folder.findall(f"{{{KML_NAMESPACE}}}Placemark")):
            if placemark.findtext(f"{{{KML_NAMESPACE}}}name") in names:
                folder.remove(placemark)
    return ET.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True)


@pytest.fixture
def repo(make_repo):
    repo = make_repo()
    repo.commit_file("README.md", "Tracker fork\n", "2019-01-01T00:00:00+00:00")
    return repo


@pytest.fixture
def archive(tmp_path):
    """Three good captures, a truncated one and one that repeats its predecessor."""
    directory = tmp_path / "archive"
    directory.mkdir()
    full = (CAPTURES / "map-2021.kml").read_bytes()
    (directory / "2020-03-02.kml").write_bytes(capture_without(CEDAR_FALLS))
    (directory / "2020-05-01.kml").write_bytes((CAPTURES / "truncated.kml").read_bytes())
    (directory / "ring-map-20200715.kmz").write_bytes(make_kmz(full))
    (directory / "ring-map-2020_08_01.kml").write_bytes(full)
    (directory / "20210110063000.kml").write_bytes(capture_without(PINE_HOLLOW))
    (directory / "notes.txt").write_text("Captures from the Wayback Machine.\n")
    return directory


def branch_commits(repo_path, branch="backfill"):
    """Return (author date, committer date, message) of the commits on ``branch`` after main."""
    output = git(repo_path, "log", "--reverse", "--format=%aI%x00%cI%x00%B%x1e", f"main..{branch}")
    return [entry.strip("\n").split("\x00") for entry in output.split("\x1e") if entry.strip()]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("2020-07-15.kml", datetime(2020, 7, 15, 12, tzinfo=timezone.utc)),
        ("ring-map-20200715.kmz", datetime(2020, 7, 15, 12, tzinfo=timezone.utc)),
        ("map_2020_07_15.kml", datetime(2020, 7, 15, 12, tzinfo=timezone.utc)),
        ("20200715063012.kml", datetime(2020, 7, 15, 6, 30, 12, tzinfo=timezone.utc)),
        ("wayback-20200715063012-ring.kmz", datetime(2020, 7, 15, 6, 30, 12, tzinfo=timezone.utc)),
        ("ring-map.kml", None),
        ("2020-02-30.kml", None),
        ("2020-07-15-to-2020-08-01.kml", None),
        ("202007151.kml", None),
        ("2020-07_15.kml", None),
    ],
)
def test_capture_date_from_name(name, expected):
    assert capture_date(name) == expected


def test_backfill_commits_dated_captures(repo, archive):
    result = backfill(repo.path, archive)

    commits = branch_commits(repo.path)
    assert [(author, committer) for author, committer, _ in commits] == [
        ("2020-03-02T12:00:00+00:00", "2020-03-02T12:00:00+00:00"),
        ("2020-07-15T12:00:00+00:00", "2020-07-15T12:00:00+00:00"),
        ("2021-01-10T06:30:00+00:00", "2021-01-10T06:30:00+00:00"),
    ]
    assert [capture.path.name for capture, _ in result.committed] == [
        "2020-03-02.kml", "ring-map-20200715.kmz", "20210110063000.kml",
    ]
    assert [capture.path.name for capture in result.unchanged] == ["ring-map-2020_08_01.kml"]


def test_backfill_rejects_bad_capture_by_name(repo, archive, caplog):
    result = backfill(repo.path, archive)

    assert [capture.path.name for capture, _ in result.rejected] == ["2020-05-01.kml"]
    rejections = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(rejections) == 1
    assert rejections[0].startswith("Rejected capture 2020-05-01.kml:")
    assert len(branch_commits(repo.path)) == 3


def test_backfill_commit_messages_name_capture(repo, archive):
    backfill(repo.path, archive)

    messages = [message for _, _, message in branch_commits(repo.path)]
    assert messages[0].startswith("Ring map: 4 agencies (+4, -0, 0 changed)")
    assert messages[1].startswith("Ring map: 5 agencies (+1, -0, 0 changed)")
    assert f"- {CEDAR_FALLS}" in messages[1]
    assert messages[2].startswith("Ring map: 4 agencies (+0, -1, 0 changed)")
    assert "Fetched-At: 2021-01-10T06:30:00Z" in messages[2]
    assert "Source-URL: https://www.google.com/maps/d/kml?mid=" in messages[2]


def test_backfill_leaves_checkout_alone(repo, archive):
    head = git(repo.path, "rev-parse", "HEAD")

    backfill(repo.path, archive)

    assert git(repo.path, "rev-parse", "HEAD") == head
    assert git(repo.path, "branch", "--show-current").strip() == "main"
    assert not (repo.path / DATA_FILE).exists()
    assert git(repo.path, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(repo.path, "merge-base", "main", "backfill") == head


def test_build_on_backfill_yields_events(repo, archive, tmp_path):
    backfill(repo.path, archive)
    # The documented next step. git-history also needs the data file in the checkout.
    git(repo.path, "merge", "--quiet", "--ff-only", "backfill")
    db_path = tmp_path / "ring.db"

    build(repo.path, db_path, branch="backfill")

    db = sqlite_utils.Database(db_path)
    events = [
        (row["agency_name"], row["event"], row["date"])
        for row in db.query("select agency_name, event, date from events order by date, agency_name")
    ]
    joined_first = "2020-03-02T12:00:00+00:00"
    assert events == [
        ("Harbor Town Police & Fire Department", "joined", joined_first),
        (LAKEVIEW, "joined", joined_first),
        ("Millbrook Township Police Department", "joined", joined_first),
        (PINE_HOLLOW, "joined", joined_first),
        (CEDAR_FALLS, "joined", "2020-07-15T12:00:00+00:00"),
        (PINE_HOLLOW, "left", "2021-01-10T06:30:00+00:00"),
    ]
    statuses = {row["name"]: row["status"] for row in db["agencies"].rows}
    assert statuses[PINE_HOLLOW] == "ended"
    assert statuses[CEDAR_FALLS] == "active"


def test_backfill_rejects_dirty_tree(repo, archive):
    (repo.path / "README.md").write_text("Edited\n")

    with pytest.raises(BackfillError, match="uncommitted changes"):
        backfill(repo.path, archive)

    assert git(repo.path, "branch", "--list", "backfill") == ""


def test_backfill_rejects_undated_file(repo, archive):
    (archive / "ring-map-latest.kml").write_bytes((CAPTURES / "map-2021.kml").read_bytes())

    with pytest.raises(BackfillError, match="ring-map-latest.kml"):
        backfill(repo.path, archive)

    assert git(repo.path, "branch", "--list", "backfill") == ""


def test_backfill_rejects_existing_branch(repo, archive):
    git(repo.path, "branch", "backfill")

    with pytest.raises(BackfillError, match="already exists"):
        backfill(repo.path, archive)


def test_backfill_rejects_captures_before_history(repo, archive):
    repo.commit_file(DATA_FILE, "[]\n", "2020-06-01T00:00:00+00:00")

    with pytest.raises(BackfillError, match="2020-03-02.kml, 2020-05-01.kml predate"):
        backfill(repo.path, archive)


def test_backfill_deletes_branch_without_commits(repo, tmp_path):
    archive = tmp_path / "only-bad"
    archive.mkdir()
    (archive / "2020-05-01.kml").write_bytes((CAPTURES / "no-placemarks.kml").read_bytes())

    result = backfill(repo.path, archive)

    assert len(result.rejected) == 1
    assert git(repo.path, "branch", "--list", "backfill") == ""


def test_find_captures_orders_by_date(archive):
    names = [capture.path.name for capture in find_captures(archive)]

    assert names == [
        "2020-03-02.kml", "2020-05-01.kml", "ring-map-20200715.kmz",
        "ring-map-2020_08_01.kml", "20210110063000.kml",
    ]


def test_cli_backfill_exits_1_on_rejection(tmp_path, archive):
    repo_path = make_git_repo(tmp_path / "cli-repo")
    (repo_path / "README.md").write_text("Tracker fork\n")
    git(repo_path, "add", "README.md")
    git(repo_path, "commit", "--quiet", "-m", "Start")

    completed = subprocess.run(
        [sys.executable, "-m", "ringtracker", "backfill", str(archive), "--branch", "archive-2020"],
        cwd=repo_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 1, completed.stderr
    assert "Rejected capture 2020-05-01.kml" in completed.stderr
    assert "3 committed, 1 unchanged, 1 rejected" in completed.stderr
    assert len(branch_commits(repo_path, "archive-2020")) == 3

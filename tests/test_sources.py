"""The converters git-history runs: feeding it only changed records keeps its tables the same."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils

from ringtracker import sources

from .conftest import PROJECT_ROOT

GIT_HISTORY = str(Path(sys.executable).parent / "git-history")


def record(agency_id, **fields):
    base = {"id": agency_id, "name": f"Agency {agency_id}", "state": "CA", "video_requests": 0}
    return {**base, **fields}


# Each version makes a change that `==` alone would miss, or one git-history treats specially.
VERSIONS = [
    [record("a"), record("b"), record("c", extra={"n": 1})],
    [record("a"), record("b", video_requests=1), record("c", extra={"n": 1})],
    # 1 -> 1.0 -> True are equal under `==` but hash differently in git-history.
    [record("a"), record("b", video_requests=1.0), record("c", extra={"n": 1.0})],
    [record("a"), record("b", video_requests=True), record("c", extra={"n": 1.0})],
    # Keys in another order: the same record to git-history.
    [dict(reversed(list(record("a").items()))), record("b", video_requests=True)],
    # "c" leaves and comes back with a new name, and "d" joins.
    [record("a"), record("b", video_requests=True), record("c", name="Renamed"), record("d")],
    [record("a"), record("b", video_requests=True), record("c", name="Renamed"), record("d")],
]


def history_repo(make_repo):
    repo = make_repo()
    for day, version in enumerate(VERSIONS, start=1):
        repo.commit_file("data/agencies.json", json.dumps(version), f"2024-01-{day:02d}T12:00:00Z")
    return repo


def run_git_history(repo, db_path, convert):
    subprocess.run(
        [GIT_HISTORY, "file", str(db_path), str(repo.path / "data/agencies.json"),
         "--repo", str(repo.path), "--namespace", "ring_map", "--id", "id",
         "--import", "ringtracker.sources", "--convert", convert, "--silent"],
        check=True,
        env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"},
    )


def tables(db_path):
    """Every git-history table, with column ids replaced by names (ids follow set order)."""
    db = sqlite_utils.Database(db_path)
    dump = {
        name: list(db.query(f"select * from [{name}] order by 1"))
        for name in ("ring_map", "ring_map_version", "commits", "namespaces")
    }
    dump["changed"] = list(db.query(
        "select item_version, columns.name from ring_map_changed "
        "join columns on columns.id = ring_map_changed.column order by 1, 2"
    ))
    return dump


def test_changed_records_same_tables(make_repo, tmp_path):
    repo = history_repo(make_repo)
    run_git_history(repo, tmp_path / "whole.db", "ringtracker.sources.map_records(content)")
    run_git_history(repo, tmp_path / "changed.db", sources.RING_MAP.convert_expression)
    whole, changed = tables(tmp_path / "whole.db"), tables(tmp_path / "changed.db")
    assert changed == whole
    # The versions above must really produce changes for the comparison to mean anything.
    assert len(whole["ring_map_version"]) == 9


def test_changed_records_resumed_build(make_repo, tmp_path):
    # A second git-history process starts with no previous version in memory,
    # so it returns the first new version whole and git-history compares it.
    repo = history_repo(make_repo)
    run_git_history(repo, tmp_path / "whole.db", "ringtracker.sources.map_records(content)")
    run_git_history(repo, tmp_path / "resumed.db", sources.RING_MAP.convert_expression)
    repo.commit_file(
        "data/agencies.json",
        json.dumps([record("a", video_requests=2), record("b", video_requests=True)]),
        "2024-02-01T12:00:00Z",
    )
    for name in ("whole.db", "resumed.db"):
        run_git_history(repo, tmp_path / name, sources.RING_MAP.convert_expression)
    assert tables(tmp_path / "resumed.db") == tables(tmp_path / "whole.db")


@pytest.fixture
def fresh_converter_state(monkeypatch):
    monkeypatch.setattr(sources, "_previous_versions", {})


@pytest.mark.usefixtures("fresh_converter_state")
def test_changed_records_drops_unchanged():
    first = json.dumps([record("a"), record("b")]).encode()
    second = json.dumps([record("a"), record("b", video_requests=1.0)]).encode()
    assert [r["id"] for r in sources.changed_records("map_records", first)] == ["a", "b"]
    assert sources.changed_records("map_records", first) == []
    assert sources.changed_records("map_records", second) == [record("b", video_requests=1.0)]


@pytest.mark.usefixtures("fresh_converter_state")
def test_changed_records_bad_version(caplog):
    first = json.dumps([record("a")]).encode()
    second = json.dumps([record("a", video_requests=3)]).encode()
    assert sources.changed_records("map_records", first) == [record("a")]
    assert sources.changed_records("map_records", b"[]") == []
    assert "contains no agencies" in caplog.text
    # The next version is compared with the last readable one.
    assert sources.changed_records("map_records", second) == [record("a", video_requests=3)]

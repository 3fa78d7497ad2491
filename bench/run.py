"""Benchmark the ring.db build and the Datasette site on synthetic map histories.

For each profile (see bench.make_history) the run measures, on one machine:

* floor: read every version of data/agencies.json from git and parse it;
* plain `git-history file` with the project's options and the database on
  disk, on the first `slice_commits` commits only. git-history 0.8 commits
  each row in its own transaction, so on disk it is slow. The project's build
  is timed on the same slice, so the two compare like with like;
* the project's full build (`ingest.py --full`) of the whole history, its
  peak memory, and an incremental build after one more commit;
* Datasette serving the built database with the flags of `make serve`,
  under concurrent load.

It prints a table, the goals met and missed, and then one `name value` line
per figure.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click

from . import make_history
from .load import PageLoad, datasette_server, find_wrk, load_pages, serve_flags

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RSS_POLL_SECONDS = 0.1
MB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    commits: int
    start_agencies: int
    end_agencies: int
    slice_commits: int  # commits that plain git-history and the slice build read


# One year of daily commits, growing at the rate of the 5-year reference.
DEFAULT_SIZES = Sizes(commits=365, start_agencies=2600, end_agencies=3086, slice_commits=30)
# Five years of daily commits, 2,600 agencies growing to 5,030.
FULL_SIZES = Sizes(commits=1826, start_agencies=2600, end_agencies=5030, slice_commits=150)

# (figure, profile whose figure counts, limit): every goal is "at most limit".
GOALS = (
    ("full_build_vs_git_history", "busy", 0.3),
    ("full_build_vs_floor", "quiet", 5.0),
    ("incremental_seconds", "busy", 2.0),
    ("incremental_seconds", "quiet", 2.0),
    ("home_p95_ms", "*", 50.0),
    ("facets_p95_ms", "*", 50.0),
    ("timeline_p95_ms", "*", 50.0),
    ("home_p95_vs_plain_table", "*", 1.5),
    ("facets_p95_vs_plain_table", "*", 1.5),
    ("timeline_p95_vs_plain_table", "*", 1.5),
    ("build_peak_rss_mb", "*", 500.0),
)


@dataclass(frozen=True)
class LoadSettings:
    concurrency: int
    max_requests: int
    time_limit: float
    flags_override: str | None  # `datasette serve` flags with {db} for the database
    client: str  # load generator: "wrk" or "httpx"


@dataclass(frozen=True)
class ProcessRun:
    seconds: float
    max_rss_bytes: int  # largest single process of the tree (kernel's ru_maxrss)
    peak_tree_rss_bytes: int  # largest sum over the process tree, sampled


def run_measured(command: list[str], log_path: Path, cwd: Path = PROJECT_ROOT) -> ProcessRun:
    """Run `command` to completion and return its wall time and peak memory.

    Raises RuntimeError, with the end of its output, when the command fails.
    """
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    started = time.monotonic()
    with open(log_path, "wb") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
    sampler = TreeRssSampler(process.pid)
    sampler.start()
    # wait4 reports the largest RSS of the child and every descendant it reaped.
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop()
    if process.returncode != 0:
        raise RuntimeError(
            f"{command[0]} exited with status {process.returncode}; its output:\n"
            f"{log_path.read_text(errors='replace')[-3000:]}"
        )
    return ProcessRun(seconds, usage.ru_maxrss * 1024, sampler.peak_bytes)


class TreeRssSampler(threading.Thread):
    """Sample the summed RSS of a process and its descendants from /proc."""

    def __init__(self, root_pid: int):
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.peak_bytes = 0
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(RSS_POLL_SECONDS):
            self.peak_bytes = max(self.peak_bytes, self.tree_rss_bytes())

    def stop(self) -> None:
        self.stopped.set()
        self.join()

    def tree_rss_bytes(self) -> int:
        parents, rss_pages = {}, {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    # Fields after the command name, which is in brackets and may contain spaces.
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(entry.name)
            parents[pid] = int(fields[1])
            rss_pages[pid] = int(fields[21])
        total, pending = 0, [self.root_pid]
        while pending:
            pid = pending.pop()
            total += rss_pages.get(pid, 0)
            pending.extend(child for child, parent in parents.items() if parent == pid)
        return total * self.page_size


def measure_floor(repo: Path, branch: str = make_history.BRANCH) -> tuple[float, int]:
    """Read and JSON-parse every version of the map file; return seconds and versions read."""
    started = time.monotonic()
    listing = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--reverse", branch, "--", make_history.MAP_PATH],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    process = subprocess.Popen(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    # A writer thread keeps both pipes moving without a request per round trip.
    requests = "".join(f"{commit}:{make_history.MAP_PATH}\n" for commit in listing).encode()
    writer = threading.Thread(target=feed_and_close, args=(process.stdin, requests))
    writer.start()
    for _ in listing:
        size = int(process.stdout.readline().split()[2])
        json.loads(process.stdout.read(size))
        process.stdout.read(1)
    writer.join()
    process.wait()
    return time.monotonic() - started, len(listing)


def feed_and_close(stream, data: bytes) -> None:
    stream.write(data)
    stream.close()


def git_history_command(db_path: Path, repo: Path, branch: str) -> list[str]:
    """Return the git-history command the build runs, without its --skip options."""
    return [
        str(Path(sys.executable).parent / "git-history"),
        "file", str(db_path), str(repo / make_history.MAP_PATH),
        "--repo", str(repo),
        "--branch", branch,
        "--namespace", "ring_map",
        "--id", "id",
        "--import", "ringtracker.sources",
        "--convert", "ringtracker.sources.map_records(content)",
        "--silent",
    ]


def ingest_command(repo: Path, db_path: Path, branch: str, full: bool) -> list[str]:
    command = [
        sys.executable, str(PROJECT_ROOT / "ingest.py"),
        "--repo", str(repo), "--db", str(db_path), "--branch", branch,
    ]
    return command + ["--full"] if full else command


def longest_timeline(db_path: Path) -> tuple[str, int]:
    """Return the id and event count of the agency with the most events, the heaviest row page."""
    with sqlite3.connect(db_path) as db:
        row = db.execute(
            "SELECT agencies.id, count(*) FROM agencies JOIN events ON events.agency_id = agencies.id "
            "GROUP BY agencies.id ORDER BY count(*) DESC, agencies.id LIMIT 1"
        ).fetchone()
    if row is None:
        raise RuntimeError(f"{db_path} has no agency with events; the build produced no timeline")
    return row[0], row[1]


def bench_profile(
    profile: make_history.Profile, sizes: Sizes, workdir: Path, load: LoadSettings, seed: int
) -> dict[str, float]:
    """Run every measurement on one profile and return its figures."""
    figures: dict[str, float] = {}
    history = make_history.generate(
        workdir / "repo", profile, sizes.commits, sizes.start_agencies, sizes.end_agencies,
        seed=seed, slice_commits=sizes.slice_commits,
        reported_csv=PROJECT_ROOT / make_history.REPORTED_PATH,
    )
    figures["generation_seconds"] = history.generation_seconds
    repo = history.path

    figures["floor_seconds"], figures["commits"] = measure_floor(repo)
    log.info("%s: floor %.1f s", profile.name, figures["floor_seconds"])

    slice_branch = make_history.SLICE_REF.removeprefix("refs/heads/")
    figures["slice_commits"] = sizes.slice_commits
    plain = run_measured(
        git_history_command(workdir / "git-history.db", repo, slice_branch),
        workdir / "git-history.log",
    )
    figures["git_history_slice_seconds"] = plain.seconds
    log.info("%s: plain git-history on %d commits %.1f s", profile.name, sizes.slice_commits, plain.seconds)

    sliced = run_measured(
        ingest_command(repo, workdir / "slice.db", slice_branch, full=True), workdir / "slice.log"
    )
    figures["build_slice_seconds"] = sliced.seconds
    figures["full_build_vs_git_history"] = sliced.seconds / plain.seconds

    db_path = workdir / "site" / "ring.db"  # Datasette names the database after the file: `ring`
    db_path.parent.mkdir()
    full = run_measured(
        ingest_command(repo, db_path, make_history.BRANCH, full=True), workdir / "build.log"
    )
    figures["full_build_seconds"] = full.seconds
    figures["full_build_vs_floor"] = full.seconds / figures["floor_seconds"]
    figures["build_peak_rss_mb"] = full.max_rss_bytes / MB
    figures["build_peak_tree_rss_mb"] = full.peak_tree_rss_bytes / MB
    log.info("%s: full build %.1f s", profile.name, full.seconds)

    make_history.advance_branch(repo)
    incremental = run_measured(
        ingest_command(repo, db_path, make_history.BRANCH, full=False), workdir / "incremental.log"
    )
    figures["incremental_seconds"] = incremental.seconds
    figures["incremental_rebuilt"] = int(rebuilt_from_scratch(workdir / "incremental.log"))
    figures["db_size_mb"] = db_path.stat().st_size / MB

    figures.update(bench_site(db_path, workdir, load))
    return figures


def rebuilt_from_scratch(log_path: Path) -> bool:
    """Return True when the ingest log shows a build without --full rebuilding everything.

    The build starts over when its code changed since the saved database was
    built, for example when ringtracker/ is edited during a benchmark run.
    Such a run's incremental time is a full build's.
    """
    # NOTE: this matches the wording of ringtracker.build's log lines
    # ("rebuilding from scratch"); if that wording changes, this returns False.
    lines = log_path.read_text(errors="replace").splitlines()
    rebuilt = [line for line in lines if "rebuilding from scratch" in line]
    if rebuilt:
        log.error("The incremental build was a full rebuild, so its time is not an "
                  "incremental build's: %s", rebuilt[0])
    return bool(rebuilt)


def bench_site(db_path: Path, workdir: Path, load: LoadSettings) -> dict[str, float]:
    """Serve `db_path` as `make serve` does and measure four pages under load, cached and not."""
    if load.flags_override:
        flags = load.flags_override.format(db=db_path).split()
    else:
        flags = serve_flags(db_path)
    agency_id, event_count = longest_timeline(db_path)
    pages = {
        "home": "/",
        "facets": "/ring/agencies?_facet=state&_facet=agency_type&_facet=status",
        "timeline": f"/ring/agencies/{agency_id}",
        "plain_table": "/ring/snapshots",
    }
    # Readers' browsers get pages from the response cache after the first
    # request. "Cache-Control: no-cache" makes Datasette render every one.
    uncached_pages = {f"{name}_uncached": path for name, path in pages.items()}
    with datasette_server(flags, workdir / "datasette.log") as base_url:
        results = load_pages(base_url, pages, load.concurrency, load.max_requests,
                             load.time_limit, client=load.client)
        results += load_pages(base_url, uncached_pages, load.concurrency, load.max_requests,
                              load.time_limit, headers={"cache-control": "no-cache"},
                              client=load.client)

    figures: dict[str, float] = {"timeline_events": event_count}
    for result in results:
        figures.update(page_figures(result))
    for suffix in ("", "_uncached"):
        plain_p95 = figures[f"plain_table{suffix}_p95_ms"]
        for name in ("home", "facets", "timeline"):
            figures[f"{name}{suffix}_p95_vs_plain_table"] = figures[f"{name}{suffix}_p95_ms"] / plain_p95
    return figures


def page_figures(result: PageLoad) -> dict[str, float]:
    return {
        f"{result.name}_requests": result.requests,
        f"{result.name}_errors": len(result.errors),
        f"{result.name}_requests_per_second": result.requests_per_second,
        f"{result.name}_p50_ms": result.percentile_ms(50),
        f"{result.name}_p95_ms": result.percentile_ms(95),
        f"{result.name}_p99_ms": result.percentile_ms(99),
    }


def machine_description(workdir: Path) -> dict[str, str]:
    """Describe the machine and software versions that the figures depend on."""
    from importlib.metadata import version

    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    git_version = subprocess.run(
        ["git", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": cpu_model,
        "memory": f"{memory_kb / MB:.1f} GiB",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "git": git_version.removeprefix("git version "),
        "datasette": version("datasette"),
        "git-history": version("git-history"),
        "sqlite-utils": version("sqlite-utils"),
        "workdir": f"{workdir} ({filesystem_type(workdir)})",
        # Other work on the machine slows every figure; this records how busy it was.
        "load_average": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def filesystem_type(path: Path) -> str:
    """Return the type (ext4, tmpfs, ...) of the mount that contains `path`."""
    best, best_type = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount_point, fs_type, *_ = line.split()
        inside = str(path) == mount_point or str(path).startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, best_type = mount_point, fs_type
    return best_type


def headline_figures(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Pick the figure each goal is judged on, across profiles."""
    headline = {}
    if "busy" in results:
        headline["full_build_vs_git_history"] = results["busy"]["full_build_vs_git_history"]
    if "quiet" in results:
        headline["full_build_vs_floor"] = results["quiet"]["full_build_vs_floor"]
    for name in ("incremental_seconds", "home_p95_vs_plain_table", "build_peak_rss_mb"):
        headline[name] = max(figures[name] for figures in results.values())
    return headline


def goal_lines(results: dict[str, dict[str, float]]) -> list[str]:
    """Return one line per goal and profile: the figure, its limit, and met or missed."""
    lines = []
    for figure, profile, limit in GOALS:
        profiles = sorted(results) if profile == "*" else [profile]
        for name in profiles:
            if name not in results:
                continue
            value = results[name][figure]
            if value <= limit:
                verdict = "met"
            else:
                verdict = f"MISSED ({value / limit:.1f}x the limit)"
            lines.append(f"{name:6} {figure:30} {value:10.2f}  <= {limit:<6g} {verdict}")
    return lines


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def report(machine: dict[str, str], sizes: Sizes, results: dict[str, dict[str, float]]) -> str:
    profiles = list(results)
    names = list(next(iter(results.values())))
    lines = ["Machine"]
    lines += [f"  {key:12} {value}" for key, value in machine.items()]
    lines += [
        "",
        f"Sizes: {sizes.commits} daily commits, {sizes.start_agencies} agencies growing to "
        f"{sizes.end_agencies}; plain git-history and the slice build read the first "
        f"{sizes.slice_commits} commits only (database on disk).",
        "",
        f"{'figure':32}" + "".join(f"{name:>14}" for name in profiles),
    ]
    for name in names:
        cells = "".join(f"{format_value(results[p].get(name, float('nan'))):>14}" for p in profiles)
        lines.append(f"{name:32}{cells}")
    lines += ["", "Goals"] + [f"  {line}" for line in goal_lines(results)]
    lines += ["", "Figures"]
    for profile, figures in results.items():
        lines += [f"{profile}_{name} {format_value(value)}" for name, value in figures.items()]
    lines += [f"{name} {format_value(value)}" for name, value in headline_figures(results).items()]
    return "\n".join(lines)


@click.command()
@click.option("--full-size", is_flag=True,
              help="Use the 5-year histories: 1,826 commits, 2,600 growing to 5,030 agencies.")
@click.option("profiles", "--profile", multiple=True, type=click.Choice(sorted(make_history.PROFILES)),
              help="Profile to run; repeat for several. Default: busy and quiet.")
@click.option("--commits", type=int, help="Daily commits per history (overrides the size preset).")
@click.option("--start-agencies", type=int, help="Agencies in the first commit (overrides the preset).")
@click.option("--end-agencies", type=int, help="Agencies in the last commit (overrides the preset).")
@click.option("--slice-commits", type=int,
              help="Commits read by plain git-history and the slice build (overrides the preset).")
@click.option("--concurrency", type=int, default=16, show_default=True,
              help="Concurrent HTTP clients per page.")
@click.option("--requests", "max_requests", type=int, default=3000, show_default=True,
              help="Maximum requests counted per page (httpx client only).")
@click.option("--seconds", "time_limit", type=float, default=15.0, show_default=True,
              help="Maximum seconds of load per page.")
@click.option("--client", type=click.Choice(["wrk", "httpx"]),
              help="Load generator. Default: wrk when installed (apt-get install wrk), else "
                   "httpx, whose own CPU use slows the pages it measures.")
@click.option("--seed", type=int, default=2020, show_default=True, help="Seed of the synthetic histories.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for repositories and databases; it must be on disk. Default: a new "
                   "temporary directory, removed afterwards.")
@click.option("--serve-flags", help="`datasette serve` flags with {db} for the database path. "
                                    "Default: SERVE_FLAGS of the Makefile.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING"]), default="INFO",
              show_default=True, help="Progress logged on standard error.")
def main(full_size, profiles, commits, start_agencies, end_agencies, slice_commits, concurrency,
         max_requests, time_limit, client, seed, workdir, serve_flags, log_level):
    """Measure the build and the site on synthetic histories and print the figures."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A log line per request would cost the load client time and flood the output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    preset = FULL_SIZES if full_size else DEFAULT_SIZES
    sizes = Sizes(
        commits or preset.commits,
        start_agencies or preset.start_agencies,
        end_agencies or preset.end_agencies,
        min(slice_commits or preset.slice_commits, commits or preset.commits),
    )
    if client is None:
        client = "wrk" if find_wrk() else "httpx"
        if client == "httpx":
            log.warning("wrk is not installed, so the httpx client measures the site; "
                        "its own CPU use inflates the latencies of fast pages")
    load = LoadSettings(concurrency, max_requests, time_limit, serve_flags, client)
    keep = workdir is not None
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="ring-bench-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    machine = machine_description(workdir)
    machine["load_client"] = client
    if filesystem_type(workdir) == "tmpfs":
        log.warning("%s is on tmpfs, so the on-disk git-history figure is not on disk", workdir)

    results = {}
    try:
        for name in profiles or ("busy", "quiet"):
            profile_dir = workdir / name
            if profile_dir.exists():
                raise click.ClickException(
                    f"{profile_dir} already exists; pass an empty or new --workdir."
                )
            profile_dir.mkdir()
            results[name] = bench_profile(make_history.PROFILES[name], sizes, profile_dir, load, seed)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    click.echo(report(machine, sizes, results))


if __name__ == "__main__":
    main()

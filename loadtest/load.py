"""Load test for the published site: many concurrent clients for a fixed time.

Starts `datasette serve` with the Makefile's SERVE_FLAGS on a free port of 127.0.0.1
(or uses --url, which must point at 127.0.0.1), then lets --clients clients request a
mix of pages until --seconds pass or --max-requests are sent. Halfway through, one
client runs a deliberately slow SQL query and checks that Datasette cuts it off with its
time-limit error while the other clients keep being served.

    .venv/bin/python loadtest/load.py --db ring.db --seconds 30 --clients 64

Exits non-zero when any request failed or the slow query was not cut off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file has loadtest/ on sys.path, not the repository root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import datasette_server as serve_with_flags  # noqa: E402
from bench.load import serve_flags  # noqa: E402

log = logging.getLogger("loadtest")
DATABASE = "ring"
REQUEST_TIMEOUT = 15.0
# Counts to 10^9 in a recursive CTE: minutes of work, far beyond any time limit.
SLOW_SQL = (
    "with recursive counter(x) as (select 1 union all select x + 1 from counter where x < 1000000000) "
    "select count(*) from counter"
)
TIME_LIMIT_MESSAGE = "SQL query took too long"


@dataclass
class Sample:
    path: str
    status: int | None
    started: float
    finished: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass
class SlowQueryResult:
    status: int | None
    cut_off: bool
    seconds: float
    message: str
    concurrent_ok: int = 0
    concurrent_failed: int = 0


@dataclass
class LoadReport:
    samples: list[Sample] = field(default_factory=list)
    slow_query: SlowQueryResult | None = None
    wall_seconds: float = 0.0

    @property
    def errors(self) -> list[Sample]:
        return [sample for sample in self.samples if not sample.ok]

    def percentile(self, share: float) -> float:
        latencies = sorted(sample.seconds for sample in self.samples)
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))]

    def passed(self) -> bool:
        slow = self.slow_query
        slow_ok = slow is None or (slow.cut_off and slow.concurrent_ok > 0 and slow.concurrent_failed == 0)
        return bool(self.samples) and not self.errors and slow_ok

    def lines(self) -> list[str]:
        count = len(self.samples)
        rate = count / self.wall_seconds if self.wall_seconds else 0.0
        lines = [
            f"requests: {count} in {self.wall_seconds:.1f} s ({rate:.0f}/s), errors: {len(self.errors)}",
            "latency ms: p50 {:.0f}, p90 {:.0f}, p99 {:.0f}, max {:.0f}".format(
                *(1000 * self.percentile(share) for share in (0.5, 0.9, 0.99, 1.0))
            ),
        ]
        by_path: dict[str, list[float]] = {}
        for sample in self.samples:
            by_path.setdefault(page_kind(sample.path), []).append(sample.seconds)
        for kind, latencies in sorted(by_path.items()):
            latencies.sort()
            lines.append(
                f"  {kind}: {len(latencies)} requests, p50 {1000 * latencies[len(latencies) // 2]:.0f} ms, "
                f"max {1000 * latencies[-1]:.0f} ms"
            )
        for sample in self.errors[:10]:
            lines.append(f"  error: {sample.path} -> {sample.status} {sample.error or ''}".rstrip())
        if self.slow_query:
            slow = self.slow_query
            lines.append(
                f"slow query: HTTP {slow.status} after {slow.seconds:.2f} s, cut off by the time limit: {slow.cut_off}; "
                f"meanwhile {slow.concurrent_ok} other requests succeeded and {slow.concurrent_failed} failed"
            )
        return lines


def page_kind(path: str) -> str:
    """Group a request path under a short label for the report."""
    for prefix, label in (
        ("/ring/new_joins_feed.atom", "atom new joins"),
        ("/ring/departures_feed.atom", "atom departures"),
        ("/ring/agencies/", "agency timeline"),
        ("/ring/agencies?_facet", "agencies facets"),
        ("/ring/agencies", "agencies table"),
        ("/ring?sql=", "sql page"),
        ("/ring/state_counts", "canned query"),
        ("/search", "search"),
        ("/state/", "state page"),
    ):
        if path.startswith(prefix):
            return label
    return "home" if path == "/" else path


def check_local_url(url: str) -> str:
    """Return ``url`` without a trailing slash, or raise ValueError unless its host is 127.0.0.1."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        raise ValueError(f"Refusing to load-test {url!r}: only http://127.0.0.1 URLs are allowed.")
    return url.rstrip("/")


@contextlib.contextmanager
def datasette_server(db: Path, log_path: Path | None = None) -> Iterator[str]:
    """Run `datasette serve` with the flags of `make serve` on a free port of 127.0.0.1."""
    with tempfile.TemporaryDirectory(prefix="ring-load-") as scratch:
        log_file = log_path or Path(scratch) / "datasette.log"
        with serve_with_flags(serve_flags(db), log_file) as base:
            yield base


async def discover_paths(client: httpx.AsyncClient, base: str) -> list[str]:
    """Build the request mix from an agency and a state that exist in the served database."""
    response = await client.get(f"{base}/{DATABASE}/agencies.json?_shape=array&_size=1&_sort=id&state__notblank=1")
    response.raise_for_status()
    rows = response.json()
    if not rows:
        raise RuntimeError("The agencies table is empty; build ring.db first.")
    agency_id, state = rows[0]["id"], rows[0]["state"]
    word = (rows[0]["name"] or "police").split()[0]
    sql = "select state, count(*) as agencies from agencies group by state order by agencies desc"
    return [
        "/",
        f"/{DATABASE}/agencies",
        f"/{DATABASE}/agencies?_facet=state&_facet=agency_type&_facet=status",
        f"/search?q={quote(word)}",
        f"/{DATABASE}/agencies/{quote(agency_id, safe='')}",
        f"/state/{state}",
        f"/{DATABASE}/new_joins_feed.atom",
        f"/{DATABASE}/departures_feed.atom",
        f"/{DATABASE}?sql={quote(sql)}",
        f"/{DATABASE}/state_counts",
    ]


async def fetch(client: httpx.AsyncClient, base: str, path: str) -> Sample:
    started = time.monotonic()
    try:
        response = await client.get(base + path)
        await response.aread()
        return Sample(path, response.status_code, started, time.monotonic(),
                      None if response.status_code == 200 else response.text[:200])
    except httpx.HTTPError as error:
        return Sample(path, None, started, time.monotonic(), f"{type(error).__name__}: {error}")


async def client_loop(client, base, paths, deadline, budget, samples, offset):
    for path in itertools.islice(itertools.cycle(paths), offset, None):
        if time.monotonic() >= deadline or next(budget, None) is None:
            return
        samples.append(await fetch(client, base, path))


async def slow_query(client: httpx.AsyncClient, base: str) -> SlowQueryResult:
    started = time.monotonic()
    try:
        response = await client.get(f"{base}/{DATABASE}.json?sql={quote(SLOW_SQL)}")
    except httpx.HTTPError as error:
        return SlowQueryResult(None, False, time.monotonic() - started, f"{type(error).__name__}: {error}")
    seconds = time.monotonic() - started
    try:
        message = response.json().get("error") or ""
    except (json.JSONDecodeError, AttributeError):
        message = response.text[:200]
    cut_off = response.status_code == 400 and TIME_LIMIT_MESSAGE in message
    return SlowQueryResult(response.status_code, cut_off, seconds, message)


async def run_load_async(base: str, seconds: float, clients: int, max_requests: int, check_slow: bool) -> LoadReport:
    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits, trust_env=False) as client:
        paths = await discover_paths(client, base)
        report = LoadReport()
        budget = iter(range(max_requests))
        started = time.monotonic()
        deadline = started + seconds
        workers = [
            asyncio.create_task(client_loop(client, base, paths, deadline, budget, report.samples, number))
            for number in range(clients)
        ]
        if check_slow:
            await asyncio.sleep(seconds / 3)
            slow_started = time.monotonic()
            report.slow_query = await slow_query(client, base)
            slow_finished = time.monotonic()
            # Requests answered while the slow query held a database connection.
            during = [sample for sample in list(report.samples) if slow_started <= sample.finished <= slow_finished]
            report.slow_query.concurrent_ok = sum(sample.ok for sample in during)
            report.slow_query.concurrent_failed = sum(not sample.ok for sample in during)
        await asyncio.gather(*workers)
        report.wall_seconds = time.monotonic() - started
        return report


def run_load(base: str, seconds: float = 30.0, clients: int = 64, max_requests: int = 200_000,
             check_slow: bool = True) -> LoadReport:
    """Load ``base`` (an http://127.0.0.1 URL) and return the report."""
    base = check_local_url(base)
    return asyncio.run(run_load_async(base, seconds, clients, max_requests, check_slow))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="Base URL of a running site on 127.0.0.1; without it a server is started.")
    parser.add_argument("--db", type=Path, default=ROOT / "ring.db", help="Database to serve when --url is not given.")
    parser.add_argument("--seconds", type=float, default=30.0, help="How long the clients run.")
    parser.add_argument("--clients", type=int, default=64, help="Concurrent clients.")
    parser.add_argument("--max-requests", type=int, default=200_000, help="Upper bound on requests sent.")
    parser.add_argument("--no-slow-query", action="store_true", help="Skip the slow-query time-limit check.")
    parser.add_argument("--server-log", type=Path, help="Write the started server's output to this file.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # httpx logs every request at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.url:
            base = check_local_url(args.url)
            server = contextlib.nullcontext(base)
        else:
            if not args.db.exists():
                log.error("%s does not exist; build it with `.venv/bin/python ingest.py` first.", args.db)
                return 2
            server = datasette_server(args.db.resolve(), args.server_log)
    except ValueError as error:
        log.error("%s", error)
        return 2
    with server as base:
        log.info("Loading %s with %d clients for %.0f s", base, args.clients, args.seconds)
        report = run_load(base, args.seconds, args.clients, args.max_requests, not args.no_slow_query)
    for line in report.lines():
        log.info("%s", line)
    if not report.passed():
        log.error("FAILED: requests failed or the slow query was not cut off")
        return 1
    log.info("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())

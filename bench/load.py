"""Serve a built ring.db with Datasette on 127.0.0.1 and measure pages under concurrent load."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 60.0  # seconds for Datasette to respond to its first request
REQUEST_TIMEOUT = 30.0  # seconds for one page
PERCENTILES = (50, 95, 99)
# Browsers ask for compressed pages, so the load generators do too.
BROWSER_HEADERS = {"accept-encoding": "gzip"}
# wrk calls done() once at the end, with latencies in microseconds.
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50": %f, "p95": %f, "p99": %f}\\n',
    summary.requests, summary.duration / 1e6, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000))
end
"""


@dataclass
class PageLoad:
    """Requests and latencies of one page requested by `concurrency` clients at once."""

    name: str
    path: str
    concurrency: int
    client: str  # the load generator: "wrk" or "httpx"
    requests: int = 0
    seconds: float = 0.0
    percentiles_ms: dict[int, float] = field(default_factory=dict)  # 50, 95 and 99
    errors: list[str] = field(default_factory=list)  # one line per kind of failure

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, percent: int) -> float:
        return self.percentiles_ms.get(percent, float("nan"))


def latency_percentiles(latencies: list[float]) -> dict[int, float]:
    """Return the 50th, 95th and 99th percentiles of `latencies` (seconds) in milliseconds."""
    if not latencies:
        return {}
    if len(latencies) == 1:
        return {percent: latencies[0] * 1000 for percent in PERCENTILES}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {percent: cuts[percent - 1] * 1000 for percent in PERCENTILES}


def serve_flags(db_path: Path) -> list[str]:
    """Return the `datasette serve` flags of `make serve`, with `db_path` as the database.

    Make expands the Makefile's SERVE_FLAGS with DB set to `db_path`, so the
    benchmark serves with whatever flags the project serves with.
    """
    target = "bench-print-serve-flags"
    command = [
        "make", "--no-print-directory", "-s", "-C", str(PROJECT_ROOT),
        "--eval", f"{target}: ; @echo $(SERVE_FLAGS)",
        target, f"DB={db_path}",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise RuntimeError(
            f"Could not read SERVE_FLAGS from {PROJECT_ROOT / 'Makefile'} with make ({error}); "
            "pass the flags with --serve-flags instead."
        ) from None
    return shlex.split(result.stdout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def datasette_server(flags: list[str], log_path: Path) -> Iterator[str]:
    """Run `datasette serve` with `flags` on a free port of 127.0.0.1 and yield its base URL."""
    port = free_port()
    datasette = Path(sys.executable).parent / "datasette"
    command = [str(datasette), "serve", *flags, "--host", "127.0.0.1", "--port", str(port)]
    log.info("Starting %s", shlex.join(command))
    with open(log_path, "wb") as server_log:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=server_log, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, process, log_path)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_ready(base_url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"datasette exited with status {process.returncode} before serving; "
                f"its output:\n{log_path.read_text(errors='replace')[-2000:]}"
            )
        try:
            httpx.get(f"{base_url}/-/versions.json", timeout=2.0)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(
        f"datasette did not respond on {base_url} within {STARTUP_TIMEOUT:.0f} s; see {log_path}"
    )


async def warm_up(base_url: str, path: str, concurrency: int, headers: dict[str, str]) -> None:
    """Send one uncounted request per client, as a reader's first visit would."""
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT, headers=headers) as client:
        await asyncio.gather(*(client.get(path) for _ in range(concurrency)))


async def httpx_page(
    base_url: str,
    name: str,
    path: str,
    concurrency: int,
    max_requests: int,
    time_limit: float,
    headers: dict[str, str],
) -> PageLoad:
    """Request `path` from `concurrency` clients until `max_requests` or `time_limit` seconds.

    Each client sends its next request as soon as its previous response has
    arrived. The clients share one Python process, which held a cached page
    to about 500 requests per second on two cores where wrk reached over 5,000.
    """
    result = PageLoad(name, path, concurrency, "httpx")
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT, headers=headers
    ) as client:
        issued = 0
        started = time.monotonic()
        deadline = started + time_limit

        async def client_loop() -> None:
            nonlocal issued
            while issued < max_requests and time.monotonic() < deadline:
                issued += 1
                sent = time.monotonic()
                response = await client.get(path)
                latencies.append(time.monotonic() - sent)
                if response.status_code != 200:
                    result.errors.append(f"{response.status_code}: {response.text[:200]!r}")

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        result.seconds = time.monotonic() - started
    result.requests = len(latencies)
    result.percentiles_ms = latency_percentiles(latencies)
    return result


def wrk_page(
    wrk: str,
    base_url: str,
    name: str,
    path: str,
    concurrency: int,
    time_limit: float,
    headers: dict[str, str],
) -> PageLoad:
    """Load `path` with wrk, one thread and `concurrency` connections, for `time_limit` seconds."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT)
        script.flush()
        command = [
            wrk, "--threads", "1", "--connections", str(concurrency),
            "--duration", f"{max(1, round(time_limit))}s",
            "--timeout", f"{REQUEST_TIMEOUT:.0f}s", "--script", script.name,
        ]
        for header, value in headers.items():
            command += ["--header", f"{header}: {value}"]
        completed = subprocess.run(
            [*command, base_url + path], capture_output=True, text=True, check=False
        )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed on {path} with status {completed.returncode}: "
                           f"{completed.stderr.strip()[:500]}")
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    result = PageLoad(name, path, concurrency, "wrk", requests=figures["requests"],
                      seconds=figures["seconds"])
    result.percentiles_ms = {percent: figures[f"p{percent}"] for percent in PERCENTILES}
    if figures["non_2xx"]:
        result.errors.append(f"{figures['non_2xx']} responses were not 2xx or 3xx")
    if figures["socket_errors"]:
        result.errors.append(f"{figures['socket_errors']} connection errors or timeouts")
    return result


def find_wrk() -> str | None:
    return shutil.which("wrk")


def load_pages(
    base_url: str,
    pages: dict[str, str],
    concurrency: int,
    max_requests: int,
    time_limit: float,
    headers: dict[str, str] | None = None,
    client: str = "wrk",
) -> list[PageLoad]:
    """Measure each page of `pages` (name -> path) in turn, one page at a time.

    `client` is "wrk" or "httpx"; `max_requests` applies to httpx only, since
    wrk runs for a fixed time.
    """
    headers = {**BROWSER_HEADERS, **(headers or {})}
    results = []
    for name, path in pages.items():
        log.info("Loading %s with %d concurrent %s clients", path, concurrency, client)
        asyncio.run(warm_up(base_url, path, concurrency, headers))
        if client == "wrk":
            wrk = find_wrk()
            if wrk is None:
                raise RuntimeError("wrk is not installed: apt-get install wrk, or use the httpx client")
            result = wrk_page(wrk, base_url, name, path, concurrency, time_limit, headers)
        else:
            result = asyncio.run(
                httpx_page(base_url, name, path, concurrency, max_requests, time_limit, headers)
            )
        if result.errors:
            log.error("%s (%s): %s", name, path, "; ".join(result.errors[:3]))
        results.append(result)
    return results

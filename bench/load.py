"""Serve a built ring.db with Datasette on 127.0.0.1 and measure pages under concurrent load."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 60.0  # seconds for Datasette to respond to its first request
REQUEST_TIMEOUT = 30.0  # seconds for one page


@dataclass
class PageLoad:
    """Latencies of one page requested by `concurrency` clients at once."""

    name: str
    path: str
    concurrency: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, one per response
    errors: list[str] = field(default_factory=list)  # status and start of body of non-200s

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, percent: int) -> float:
        """Return the `percent`th percentile latency in milliseconds."""
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return cuts[percent - 1] * 1000


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


async def load_page(
    base_url: str,
    name: str,
    path: str,
    concurrency: int,
    max_requests: int,
    time_limit: float,
    headers: dict[str, str] | None = None,
) -> PageLoad:
    """Request `path` from `concurrency` clients until `max_requests` or `time_limit` seconds.

    Each client sends its next request as soon as its previous response has
    arrived. A first round of requests per client warms the caches and is not
    counted. `headers` go with every request.
    """
    result = PageLoad(name, path, concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT, headers=headers
    ) as client:
        await asyncio.gather(*(client.get(path) for _ in range(concurrency)))
        issued = 0
        started = time.monotonic()
        deadline = started + time_limit

        async def client_loop() -> None:
            nonlocal issued
            while issued < max_requests and time.monotonic() < deadline:
                issued += 1
                sent = time.monotonic()
                response = await client.get(path)
                result.latencies.append(time.monotonic() - sent)
                if response.status_code != 200:
                    result.errors.append(f"{response.status_code}: {response.text[:200]!r}")

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        result.seconds = time.monotonic() - started
    if result.errors:
        log.error(
            "%s (%s): %d of %d responses were not 200, first: %s",
            name, path, len(result.errors), result.requests, result.errors[0],
        )
    return result


def load_pages(
    base_url: str,
    pages: dict[str, str],
    concurrency: int,
    max_requests: int,
    time_limit: float,
    headers: dict[str, str] | None = None,
) -> list[PageLoad]:
    """Measure each page of `pages` (name -> path) in turn, one page at a time."""
    results = []
    for name, path in pages.items():
        log.info("Loading %s with %d concurrent clients", path, concurrency)
        results.append(asyncio.run(
            load_page(base_url, name, path, concurrency, max_requests, time_limit, headers)
        ))
    return results

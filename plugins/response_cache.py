"""Compress responses, and serve repeated page requests from memory while the data cannot change.

When a story links to the site, many readers request the same few pages.
Datasette renders each request again, so on two cores a burst of 16
readers waits for about 16 renderings. With `datasette serve -i` the data
cannot change while the process runs, and a rendered page stays correct
except for figures that depend on the date, so entries expire after
`ttl_seconds`. Responses are gzip-compressed (by asgi-gzip) for clients
that accept it, and the cache keeps them compressed.

Configured under `plugins: ring-response-cache:` in metadata.yml. Requests
with cookies or an Authorization header, or with `Cache-Control: no-cache`,
bypass the cache, and so do responses that set cookies or are not 200.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import NamedTuple

from asgi_gzip import GZipMiddleware
from datasette import hookimpl

log = logging.getLogger(__name__)

CONFIG_NAME = "ring-response-cache"
DEFAULT_TTL_SECONDS = 300
DEFAULT_MAX_MEGABYTES = 32
STATUS_HEADER = b"x-ring-cache"


class Entry(NamedTuple):
    expires: float
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class ResponseCache:
    """ASGI middleware: a least-recently-used store of whole responses, bounded in bytes."""

    def __init__(self, app, datasette, ttl_seconds: float, max_bytes: int):
        self.app = app
        self.datasette = datasette
        self.ttl_seconds = ttl_seconds
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_bytes // 8
        self.entries: OrderedDict[tuple, Entry] = OrderedDict()
        self.size = 0

    async def __call__(self, scope, receive, send):
        key = self.key(scope)
        if key is None:
            await self.app(scope, receive, self.marked(send, b"bypass"))
            return
        entry = self.lookup(key)
        if entry is not None:
            await self.replay(entry, send)
            return
        await self.app(scope, receive, self.recorder(key, send))

    def key(self, scope) -> tuple | None:
        """Return the cache key of a request, or None when it must reach Datasette."""
        if scope["type"] != "http" or scope["method"] != "GET" or not self.all_immutable():
            return None
        headers = dict(scope["headers"])
        if b"cookie" in headers or b"authorization" in headers:
            return None
        if b"no-cache" in headers.get(b"cache-control", b"") or b"no-cache" in headers.get(b"pragma", b""):
            return None
        # The host appears in absolute URLs (feeds, links), and a compressed
        # body suits only clients that accept gzip.
        accepts_gzip = b"gzip" in headers.get(b"accept-encoding", b"")
        return (
            scope.get("scheme"),
            headers.get(b"host"),
            scope["path"],
            scope["query_string"],
            accepts_gzip,
        )

    def all_immutable(self) -> bool:
        # Datasette's own "_internal" database is always in memory and mutable.
        return all(
            not database.is_mutable
            for name, database in self.datasette.databases.items()
            if not name.startswith("_")
        )

    def lookup(self, key: tuple) -> Entry | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires < time.monotonic():
            self.evict(key)
            return None
        self.entries.move_to_end(key)
        return entry

    async def replay(self, entry: Entry, send) -> None:
        await send({
            "type": "http.response.start",
            "status": entry.status,
            "headers": [*entry.headers, (STATUS_HEADER, b"hit")],
        })
        await send({"type": "http.response.body", "body": entry.body})

    def marked(self, send, status: bytes):
        async def send_marked(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), (STATUS_HEADER, status)])
            await send(message)

        return send_marked

    def recorder(self, key: tuple, send):
        """Wrap `send` so the response is passed on and, when cacheable, kept."""
        response = {"start": None, "chunks": [], "size": 0, "keep": False}

        async def send_recorded(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                response["start"] = (message["status"], headers)
                response["keep"] = message["status"] == 200 and not any(
                    name.lower() == b"set-cookie" for name, _ in headers
                )
                message = dict(message, headers=[*headers, (STATUS_HEADER, b"miss")])
            elif message["type"] == "http.response.body" and response["keep"]:
                body = message.get("body", b"")
                response["size"] += len(body)
                if response["size"] > self.max_entry_bytes:
                    response["keep"], response["chunks"] = False, []
                else:
                    response["chunks"].append(body)
                if not message.get("more_body", False) and response["keep"]:
                    status, headers = response["start"]
                    self.store(key, status, headers, b"".join(response["chunks"]))
            await send(message)

        return send_recorded

    def store(self, key: tuple, status: int, headers: list, body: bytes) -> None:
        self.evict(key)
        entry = Entry(time.monotonic() + self.ttl_seconds, status, headers, body)
        self.entries[key] = entry
        self.size += len(entry.body)
        while self.size > self.max_bytes and self.entries:
            self.evict(next(iter(self.entries)))

    def evict(self, key: tuple) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.size -= len(entry.body)


@hookimpl
def asgi_wrapper(datasette):
    config = datasette.plugin_config(CONFIG_NAME) or {}
    ttl_seconds = float(config.get("ttl_seconds", DEFAULT_TTL_SECONDS))
    max_bytes = int(float(config.get("max_megabytes", DEFAULT_MAX_MEGABYTES)) * 1024 * 1024)

    def wrap(app):
        compressed = GZipMiddleware(app)
        if ttl_seconds <= 0 or max_bytes <= 0:
            log.info("Response cache disabled by the %s settings", CONFIG_NAME)
            return compressed
        return ResponseCache(compressed, datasette, ttl_seconds, max_bytes)

    return wrap

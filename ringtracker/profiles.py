"""Optional enrichment: video-request and post counts from agency profile pages.

Profile pages (https://agency.ring.com/agencies/<uuid>) are rendered by JavaScript, and
the text this module reads ("Total Video Requests: N" and per-category post counts) is
known only from other people's scrapers of 2021. NOTE: the page format is unverified, so
every format assumption sits in fetch_profile() and its helper, and a failure of any
profile only logs a warning. Results go to their own file (data/profiles.json), never
into agencies.json.
"""

import hashlib
import html
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from ringtracker.errors import FetchError, ScrapeError, SourceError
from ringtracker.fetch import FetchOptions, make_session
from ringtracker.write import write_atomic

log = logging.getLogger(__name__)

PROFILE_READ_TIMEOUT = 30.0
PROFILE_MAX_BYTES = 5 * 1024 * 1024
POST_CATEGORIES = ("Request For Assistance", "Crime", "Safety", "Animals", "Environmental", "Community")
_TOTAL_VIDEO_REQUESTS = re.compile(r"Total\s+Video\s+Requests\s*:?\s*(\d[\d,]*)", re.IGNORECASE)
_CATEGORY_COUNTS = {
    category: re.compile(r"\b" + r"\s+".join(map(re.escape, category.split())) + r"\s*:?\s*(\d[\d,]*)", re.IGNORECASE)
    for category in POST_CATEGORIES
}
_SCRIPT_OR_STYLE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ring-partnership-tracker" / "profiles"


@dataclass(frozen=True)
class ProfileOptions:
    """Limits for profile fetching. ``delay`` is the minimum pause between requests and
    ``cache_ttl`` the age up to which a cached page is reused, both in seconds."""

    delay: float = 2.0
    cache_dir: Path = field(default_factory=default_cache_dir)
    cache_ttl: float = 24 * 3600
    fetch_options: FetchOptions = field(
        default_factory=lambda: FetchOptions(read_timeout=PROFILE_READ_TIMEOUT, retries=2, max_bytes=PROFILE_MAX_BYTES)
    )


@dataclass(frozen=True)
class ProfileStats:
    total_video_requests: int | None
    posts: dict[str, int]


class RateLimiter:
    """Sleep so that calls to wait() are at least ``delay`` seconds apart."""

    def __init__(self, delay: float):
        self.delay = delay
        self._last: float | None = None

    def wait(self) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.delay:
            time.sleep(self.delay - (now - self._last))
        self._last = time.monotonic()


def fetch_profile(
    url: str,
    options: ProfileOptions,
    session: requests.Session,
    limiter: RateLimiter | None = None,
) -> ProfileStats:
    """Fetch one agency profile page (or its cached copy) and extract its counts.

    Raises FetchError when the page cannot be downloaded and SourceError when it
    contains none of the expected counts.
    """
    page = _cached_page(url, options)
    if page is None:
        if limiter is not None:
            limiter.wait()
        page = _download_page(url, options, session)
        _store_page(url, page, options)
    return _extract_stats(url, page.decode("utf-8", errors="replace"))


def _cache_path(url: str, options: ProfileOptions) -> Path:
    return options.cache_dir / (hashlib.sha256(url.encode("utf-8")).hexdigest() + ".html")


def _cached_page(url: str, options: ProfileOptions) -> bytes | None:
    path = _cache_path(url, options)
    try:
        if time.time() - path.stat().st_mtime <= options.cache_ttl:
            return path.read_bytes()
    except OSError:
        return None
    return None


def _store_page(url: str, page: bytes, options: ProfileOptions) -> None:
    try:
        write_atomic(page, _cache_path(url, options))
    except OSError as error:
        log.warning("Cannot cache profile page %s in %s: %s", url, options.cache_dir, error)


def _download_page(url: str, options: ProfileOptions, session: requests.Session) -> bytes:
    limits = options.fetch_options
    try:
        with session.get(url, timeout=(limits.connect_timeout, limits.read_timeout), stream=True) as response:
            if response.status_code != 200:
                raise FetchError(f"Profile page {url} returned HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_content(chunk_size=64 * 1024):
                size += len(chunk)
                if size > limits.max_bytes:
                    raise FetchError(f"Profile page {url} is larger than {limits.max_bytes:,} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except requests.exceptions.RequestException as error:
        raise FetchError(f"Cannot fetch profile page {url}: {error}") from None


def _extract_stats(url: str, page: str) -> ProfileStats:
    text = _TAG.sub(" ", _SCRIPT_OR_STYLE.sub(" ", page))
    text = re.sub(r"\s+", " ", html.unescape(text))
    total = _TOTAL_VIDEO_REQUESTS.search(text)
    posts = {}
    for category, pattern in _CATEGORY_COUNTS.items():
        match = pattern.search(text)
        if match:
            posts[category] = int(match.group(1).replace(",", ""))
    if total is None and not posts:
        raise SourceError(f"Profile page {url} contains neither 'Total Video Requests' nor any post category count")
    return ProfileStats(
        total_video_requests=int(total.group(1).replace(",", "")) if total else None,
        posts=posts,
    )


def read_profiles(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as error:
        log.warning("Ignoring unreadable profiles file %s: %s", path, error)
        return {}
    return data if isinstance(data, dict) else {}


def update_profiles(records: list[dict], path: Path, options: ProfileOptions) -> dict[str, dict]:
    """Fetch the profile of every record that has a profile URL and write ``path``.

    A profile that fails keeps its previous entry from ``path``, so one bad request
    does not make its counts flap in git. Entries of agencies no longer on the map are
    dropped. Returns the written mapping from agency id to counts.
    """
    previous = read_profiles(path)
    limiter = RateLimiter(options.delay)
    session = make_session(options.fetch_options)
    profiles: dict[str, dict] = {}
    failures = 0
    try:
        for record in records:
            url = record.get("profile_url")
            if not url or not url.lower().startswith(("http://", "https://")):
                continue
            try:
                stats = fetch_profile(url, options, session, limiter)
            except ScrapeError as error:
                failures += 1
                log.warning("Skipped profile of %s (%s): %s", record["name"], record["id"], error)
                if record["id"] in previous:
                    profiles[record["id"]] = previous[record["id"]]
                continue
            profiles[record["id"]] = {
                "posts": stats.posts,
                "profile_url": url,
                "total_video_requests": stats.total_video_requests,
            }
    finally:
        session.close()

    text = json.dumps(profiles, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_atomic(text.encode("utf-8"), path)
    log.info("Profiles: %d written to %s, %d failed", len(profiles), path, failures)
    return profiles

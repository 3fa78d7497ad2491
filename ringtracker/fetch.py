"""Download the map export over HTTP(S) or read an archived copy from disk.

fetch() returns the bytes of the document that contains the placemarks. When the first
document is a NetworkLink wrapper (the ``&nl=1`` form of a My Maps export), fetch()
follows its link exactly once.
"""

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse
from urllib.request import url2pathname

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import ringtracker
from ringtracker import kml
from ringtracker.errors import FetchError, SourceError

log = logging.getLogger(__name__)

# The package sets no version of its own yet; this is the scraper's version for the User-Agent.
VERSION = getattr(ringtracker, "__version__", "0.1.0")

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_FACTOR = 2.0
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
# A server may ask for a long pause in Retry-After; a scheduled job should rather fail
# and try again at its next run.
DEFAULT_MAX_RETRY_AFTER = 120.0
RETRY_STATUSES = (429, 500, 502, 503, 504)
REJECTED_CONTENT_TYPES = ("text/html", "application/xhtml+xml", "application/json")
_HTML_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)[\s>]", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class FetchOptions:
    """Network limits for one scrape. Timeouts are in seconds, sizes in bytes."""

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    retries: int = DEFAULT_RETRIES
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR
    max_bytes: int = DEFAULT_MAX_BYTES
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER


class _CappedRetry(Retry):
    """urllib3 Retry that honours Retry-After only up to a maximum wait."""

    max_retry_after = DEFAULT_MAX_RETRY_AFTER

    def new(self, **kw):
        retry = super().new(**kw)
        retry.max_retry_after = self.max_retry_after
        return retry

    def get_retry_after(self, response):
        seconds = super().get_retry_after(response)
        if seconds is None:
            return None
        return min(seconds, self.max_retry_after)


def user_agent() -> str:
    """Return the User-Agent: the project and version, plus the repository when run in GitHub Actions."""
    agent = f"ring-partnership-tracker/{VERSION}"
    repository = os.environ.get("GITHUB_REPOSITORY")
    if repository:
        agent += f" (+https://github.com/{repository})"
    return agent


def make_session(options: FetchOptions) -> requests.Session:
    """Create a requests session that retries connection errors and 429/5xx responses."""
    retry = _CappedRetry(
        total=options.retries,
        connect=options.retries,
        read=options.retries,
        status=options.retries,
        other=0,
        backoff_factor=options.backoff_factor,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    retry.max_retry_after = options.max_retry_after
    adapter = HTTPAdapter(max_retries=retry)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent()
    return session


def fetch(url: str, options: FetchOptions | None = None, session: requests.Session | None = None) -> bytes:
    """Return the KML or KMZ bytes at ``url``, following one NetworkLink if the document is a wrapper.

    ``url`` may be http(s), file:// or a plain local path. Raises FetchError for network,
    status, size and content-type failures and SourceError for a wrapper that links to
    itself, to another wrapper or (from a remote document) to a non-http(s) URL.
    """
    options = options or FetchOptions()
    own_session = session is None
    session = session or make_session(options)
    try:
        data = fetch_document(url, options, session)
        document = kml.parse_document(data)
        if document.placemarks or not document.network_links:
            return data

        target = _resolve_link(url, document.network_links)
        log.info("Following NetworkLink from %s to %s", url, target)
        data = fetch_document(target, options, session)
        target_document = kml.parse_document(data)
        if target_document.network_links and not target_document.placemarks:
            raise SourceError(
                f"The NetworkLink in {url} points at {target}, which is another NetworkLink wrapper; "
                "only one level of wrapping is followed. Point --url at the real KML instead."
            )
        return data
    finally:
        if own_session:
            session.close()


def _resolve_link(url: str, hrefs: list[str]) -> str:
    if len(hrefs) > 1:
        raise SourceError(
            f"The wrapper document {url} has {len(hrefs)} NetworkLinks ({', '.join(hrefs[:3])}); "
            "expected exactly one. Point --url at the KML you want."
        )
    base = url if _is_remote(url) or url.startswith("file:") else Path(url).resolve().as_uri()
    target = urljoin(base, hrefs[0])
    scheme = urlparse(target).scheme.lower()
    if _is_remote(url) and scheme not in ("http", "https"):
        raise SourceError(
            f"The NetworkLink in remote document {url} points at {target!r}; only http and https "
            "links are followed from a remote document."
        )
    if scheme not in ("http", "https", "file"):
        raise SourceError(f"The NetworkLink in {url} points at {target!r}, whose scheme {scheme!r} is not supported.")
    if _same_url(target, base):
        raise SourceError(f"The NetworkLink in {url} points back at the document itself; nothing to follow.")
    return target


def _same_url(a: str, b: str) -> bool:
    pa, pb = urlparse(a), urlparse(b)
    return (pa.scheme.lower(), pa.netloc.lower(), pa.path or "/", pa.query) == (
        pb.scheme.lower(),
        pb.netloc.lower(),
        pb.path or "/",
        pb.query,
    )


def _is_remote(url: str) -> bool:
    return urlparse(url).scheme.lower() in ("http", "https")


def fetch_document(url: str, options: FetchOptions, session: requests.Session) -> bytes:
    """Return the bytes of one document, without following links, after the body checks."""
    if _is_remote(url):
        data = _download(url, options, session)
    else:
        data = _read_local(url, options)
    _check_body(url, data)
    return data


def _download(url: str, options: FetchOptions, session: requests.Session) -> bytes:
    timeout = (options.connect_timeout, options.read_timeout)
    try:
        with session.get(url, timeout=timeout, stream=True) as response:
            _check_response(url, response, options)
            return _read_capped(url, response, options.max_bytes)
    except requests.exceptions.RequestException as error:
        raise _fetch_error(url, error, options) from None


def _fetch_error(url: str, error: requests.exceptions.RequestException, options: FetchOptions) -> FetchError:
    causes = _causes(error)
    if any(_is_timeout(cause) for cause in causes):
        return FetchError(
            f"Timed out fetching {url} (connect timeout {options.connect_timeout:g} s, read timeout "
            f"{options.read_timeout:g} s, {options.retries} retries). Try again later or raise --timeout."
        )
    reason = causes[-1]
    if isinstance(error, requests.exceptions.ConnectionError):
        return FetchError(f"Cannot connect to {url} ({options.retries} retries): {reason}")
    return FetchError(f"Request to {url} failed: {reason}")


def _is_timeout(error: BaseException) -> bool:
    # urllib3 makes a refused connection (NewConnectionError) a subclass of ConnectTimeoutError.
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(error, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError))


def _causes(error: BaseException) -> list[BaseException]:
    # requests wraps urllib3 errors (MaxRetryError, then its reason) several levels deep.
    chain = [error]
    while len(chain) < 10:
        current = chain[-1]
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException) and current.args and isinstance(current.args[0], BaseException):
            inner = current.args[0]
        if not isinstance(inner, BaseException) or inner in chain:
            break
        chain.append(inner)
    return chain


def _check_response(url: str, response: requests.Response, options: FetchOptions) -> None:
    if response.status_code in RETRY_STATUSES:
        raise FetchError(
            f"{url} returned HTTP {response.status_code} {response.reason or ''}".rstrip()
            + f" after {options.retries} retries. The server may be overloaded; try again later."
        )
    if response.status_code != 200:
        raise FetchError(
            f"{url} returned HTTP {response.status_code} {response.reason or ''}".rstrip()
            + ". Check that the map is public and the URL is right."
        )
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type in REJECTED_CONTENT_TYPES:
        raise FetchError(
            f"{url} returned Content-Type {content_type!r} instead of KML or KMZ; the map may be "
            "private, deleted or the URL may point at a web page."
        )
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > options.max_bytes:
        raise FetchError(
            f"{url} announces {int(length):,} bytes (Content-Length), more than the limit of "
            f"{options.max_bytes:,} bytes."
        )


def _read_capped(url: str, response: requests.Response, max_bytes: int) -> bytes:
    chunks = []
    size = 0
    for chunk in response.iter_content(chunk_size=256 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"{url} sent more than the limit of {max_bytes:,} bytes; stopped reading.")
        chunks.append(chunk)
    return b"".join(chunks)


def _read_local(url: str, options: FetchOptions) -> bytes:
    path = _local_path(url)
    try:
        size = path.stat().st_size
        if size > options.max_bytes:
            raise FetchError(f"{path} has {size:,} bytes, more than the limit of {options.max_bytes:,} bytes.")
        return path.read_bytes()
    except FileNotFoundError:
        raise FetchError(f"File not found: {path}") from None
    except OSError as error:
        raise FetchError(f"Cannot read {path}: {error.strerror or error}") from None


def _local_path(url: str) -> Path:
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise FetchError(f"file:// URL {url} names host {parsed.netloc!r}; only local files can be read.")
        return Path(url2pathname(unquote(parsed.path)))
    # One-letter schemes are Windows drive letters, not URL schemes.
    if scheme and len(scheme) > 1:
        raise FetchError(f"Unsupported URL scheme {scheme!r} in {url}; use http, https, file or a local path.")
    return Path(url)


def _check_body(url: str, data: bytes) -> None:
    if not data.strip():
        raise FetchError(f"{url} returned an empty document; the map export may have failed. Try again later.")
    if _HTML_START.match(data[:4096]):
        raise FetchError(
            f"{url} returned an HTML page instead of KML or KMZ (an error or sign-in page); "
            "check that the map is public and the URL is right."
        )
    if kml.is_kmz(data):
        return
    if data.lstrip()[:1] in (b"{", b"["):
        raise FetchError(f"{url} returned JSON instead of KML or KMZ.")

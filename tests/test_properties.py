"""Property-based tests of the scraper's parse, normalize and validate steps.

Arbitrary bytes and arbitrary KML-shaped documents may only ever raise the ScrapeError
family, and a valid document written from records must parse back to the same records.
"""

import datetime as dt
import uuid
from xml.sax.saxutils import escape, quoteattr

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringtracker.errors import ScrapeError
from ringtracker.ids import agency_slug, classify_agency
from ringtracker.kml import Placemark, parse, parse_document
from ringtracker.normalize import KNOWN_FIELDS, normalize
from ringtracker.validate import validate
from ringtracker.write import serialize

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STATES = ("OH", "TX", "CA", "NY", "IL", "WA", "PR", "GU", "DC", "AK")
TAGS = ("kml", "Document", "Folder", "Placemark", "name", "address", "ExtendedData", "Data", "value",
        "SchemaData", "SimpleData", "Point", "MultiGeometry", "coordinates", "NetworkLink", "Link", "href")


def only_scrape_errors(call, *args):
    try:
        return call(*args)
    except ScrapeError:
        return None


# Hostile input

@FAST
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_scrape_errors(data):
    only_scrape_errors(parse_document, data)


@FAST
@given(st.binary(max_size=512))
def test_random_bytes_after_zip_magic_raise_only_scrape_errors(data):
    only_scrape_errors(parse_document, b"PK\x03\x04" + data)


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@st.composite
def kml_trees(draw, depth=0):
    """Random nestings of KML element names with random text and attributes."""
    tag = draw(st.sampled_from(TAGS))
    attribute = f" name={quoteattr(draw(texts))}" if draw(st.booleans()) else ""
    children = draw(st.lists(kml_trees(depth + 1), max_size=3)) if depth < 4 else []
    return f"<{tag}{attribute}>{escape(draw(texts))}{''.join(children)}</{tag}>"


@FAST
@given(st.lists(kml_trees(), max_size=4), st.sampled_from(("utf-8", "utf-16", "latin-1")))
def test_random_kml_documents_raise_only_scrape_errors(body, encoding):
    text = f'<kml xmlns="http://www.opengis.net/kml/2.2"><Document>{"".join(body)}</Document></kml>'
    data = text.encode(encoding, errors="replace")
    placemarks = only_scrape_errors(parse, data)
    if placemarks is None:
        return
    result = normalize(placemarks)
    only_scrape_errors(validate, result.records, None, False, result.problems)


optional_texts = st.none() | texts
placemarks = st.builds(
    Placemark,
    row=st.integers(min_value=1, max_value=10_000),
    name=optional_texts,
    address=optional_texts | st.builds(lambda city, state: f"{city}, {state}", texts, st.sampled_from(STATES + ("il", "Ohio"))),
    coordinates=optional_texts | st.builds(lambda a, b: f"{a},{b}", st.floats(), st.floats()),
    data=st.lists(st.tuples(st.sampled_from(("Active Date", "active date", "Video Requests", "Agency Profile", "Notes")) | texts, optional_texts), max_size=5),
    folder=optional_texts,
)


@FAST
@given(st.lists(placemarks, max_size=8), st.none() | st.lists(st.fixed_dictionaries({"id": st.text(max_size=3)}), max_size=4), st.booleans())
def test_random_placemarks_raise_only_scrape_errors(items, old_records, allow_shrink):
    result = normalize(items)
    records = only_scrape_errors(validate, result.records, old_records, allow_shrink, result.problems)
    if records is not None:
        serialize(records)


# Round trip

words = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'.-", min_size=1, max_size=12)
phrases = st.lists(words, min_size=1, max_size=4).map(" ".join)
extra_keys = phrases.filter(lambda key: key.casefold() not in KNOWN_FIELDS)
today = dt.datetime.now(dt.timezone.utc).date()


@st.composite
def records(draw):
    name = draw(phrases) + " " + draw(st.sampled_from(("Police Department", "Sheriff's Office", "Fire Rescue", "Town")))
    city = draw(phrases)
    state = draw(st.sampled_from(STATES))
    profile = draw(st.none() | st.uuids(version=4))
    latitude, longitude = draw(
        st.none() | st.tuples(st.floats(min_value=18, max_value=71), st.floats(min_value=-179, max_value=-65))
    ) or (None, None)
    joined = draw(st.none() | st.dates(min_value=dt.date(2013, 1, 1), max_value=today))
    return {
        "id": str(profile) if profile else agency_slug(name, state),
        "name": name,
        "agency_type": classify_agency(name),
        "address": f"{city}, {state}",
        "city": city,
        "state": state,
        "latitude": latitude,
        "longitude": longitude,
        "active_date": joined.isoformat() if joined else None,
        "video_requests": draw(st.none() | st.integers(min_value=0, max_value=10**6)),
        "profile_url": f"https://agency.ring.com/agencies/{profile}" if profile else None,
        "extra": draw(st.dictionaries(extra_keys, st.none() | phrases, max_size=3)),
    }


def write_kml(rows: list[dict]) -> bytes:
    """Write records as a My Maps style export, the inverse of parse and normalize."""
    placemarks = []
    for row in rows:
        fields = []
        if row["active_date"]:
            day = dt.date.fromisoformat(row["active_date"])
            fields.append(("Active Date", f"{day.month}/{day.day}/{day.year}"))
        if row["video_requests"] is not None:
            fields.append(("Video Requests", f"{row['video_requests']:,}"))
        if row["profile_url"]:
            fields.append(("Agency Profile", row["profile_url"].upper().replace("HTTPS://AGENCY.RING.COM/AGENCIES/", "https://agency.ring.com/agencies/")))
        fields.extend(row["extra"].items())
        data = "".join(
            f"<Data name={quoteattr(key)}>" + ("<value/>" if value is None else f"<value>{escape(value)}</value>") + "</Data>"
            for key, value in fields
        )
        point = ""
        if row["latitude"] is not None:
            point = f"<Point><coordinates>{row['longitude']!r},{row['latitude']!r},0</coordinates></Point>"
        placemarks.append(
            f"<Placemark><name>{escape(row['name'])}</name><address>{escape(row['address'])}</address>"
            f"<ExtendedData>{data}</ExtendedData>{point}</Placemark>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document><Folder>'
        + "".join(placemarks)
        + "</Folder></Document></kml>"
    ).encode("utf-8")


def with_stored_profile_url(row: dict) -> dict:
    # The id is the lower-case UUID, but profile_url keeps the text the map shows.
    if row["profile_url"]:
        row = dict(row, profile_url=row["profile_url"].upper().replace("HTTPS://AGENCY.RING.COM/AGENCIES/", "https://agency.ring.com/agencies/"))
    return row


@FAST
@given(st.lists(records(), min_size=1, max_size=6, unique_by=lambda row: row["id"]))
def test_valid_document_round_trips(rows):
    result = normalize(parse(write_kml(rows)))

    assert result.problems == []
    kept = validate(result.records, None, problems=result.problems)
    assert kept == [with_stored_profile_url(row) for row in rows]
    assert serialize(kept) == serialize([with_stored_profile_url(row) for row in rows])


def test_round_trip_writer_keeps_uuid_id():
    profile = uuid.UUID("0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b")
    row = {
        "id": str(profile), "name": "Lakeview Police Department", "agency_type": "police",
        "address": "Lakeview, MI", "city": "Lakeview", "state": "MI", "latitude": 42.6, "longitude": -83.1,
        "active_date": "2019-06-04", "video_requests": 1204, "profile_url": f"https://agency.ring.com/agencies/{profile}",
        "extra": {"Notes": None},
    }

    [record] = normalize(parse(write_kml([row]))).records

    assert record["id"] == str(profile)
    assert record["video_requests"] == 1204
    assert record["profile_url"] == "https://agency.ring.com/agencies/0F8E2C1A-3B4D-4E5F-8A9B-1C2D3E4F5A6B"

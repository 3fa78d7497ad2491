import io
import zipfile

import pytest
from tests.helpers_scrape import make_kmz, read_capture

from ringtracker.errors import ScrapeError, SourceError
from ringtracker.kml import Placemark, clean_text, parse, parse_document, unpack_kmz


def test_parse_folder_placemarks_exact():
    placemarks = parse(read_capture("map-2021.kml"))

    assert len(placemarks) == 5
    assert placemarks[0] == Placemark(
        row=1,
        name="Lakeview Police Department",
        address="Lakeview, MI",
        coordinates="-83.1497751,42.6064095,0",
        data=[
            ("Active Date", "6/4/2019"),
            ("Agency Profile", "https://agency.ring.com/agencies/0f8e2c1a-3b4d-4e5f-8a9b-1c2d3e4f5a6b"),
        ],
        folder="Active Agencies",
    )


def test_parse_cdata_trimmed_and_unescaped():
    harbor = parse(read_capture("map-2021.kml"))[3]

    assert harbor.name == "Harbor Town Police & Fire Department"
    assert harbor.address == "Harbor Town, TX"
    assert harbor.data[0] == ("Active Date", "11/23/2020")
    assert harbor.data[2] == ("Notes", "Joined with the <county> task force & EMS")


def test_parse_keeps_data_names_as_written():
    cedar = parse(read_capture("map-2021.kml"))[2]

    assert [name for name, _ in cedar.data] == ["ACTIVE DATE", "agency profile"]


def test_parse_placemark_without_point():
    millbrook = parse(read_capture("map-2021.kml"))[4]

    assert millbrook.name == "Millbrook Township Police Department"
    assert millbrook.coordinates is None


def test_parse_placemarks_directly_under_document():
    placemarks = parse(read_capture("map-2020-direct.kml"))

    assert [p.name for p in placemarks] == [
        "Lakeview Police Department",
        "Brookside Police Department",
        "Oakmont County Sheriff’s Department",
        "Willow Creek Department of Public Safety",
    ]
    assert [p.folder for p in placemarks] == [None, None, None, None]
    assert placemarks[0].data == [("Video Requests", "12"), ("Active Date", "6/4/2019")]
    assert placemarks[3].data == [("Video Requests", None), ("Active Date", "7/1/2020")]


def test_parse_nested_folders_in_document_order():
    placemarks = parse(read_capture("folders.kml"))

    assert [(p.row, p.name, p.folder) for p in placemarks] == [
        (1, "Greenfield Town Marshal", None),
        (2, "Fairview Police Department", "Law Enforcement"),
        (3, "Ash County Constable Precinct 2", "Constables"),
        (4, "Maple Grove Fire Protection District", "Districts"),
        (5, "Stonebridge County Fire Marshal", "Fire Departments"),
    ]
    # The fire district's Point sits inside a MultiGeometry.
    assert placemarks[3].coordinates == "-88.0834,41.7923,0"


@pytest.mark.parametrize(
    "namespace",
    ["", ' xmlns="http://earth.google.com/kml/2.1"', ' xmlns="http://www.opengis.net/kml/2.2"'],
)
def test_parse_namespace_variants(namespace):
    document = (
        f"<kml{namespace}><Document><Placemark><name>Lakeview Police Department</name>"
        "<address>Lakeview, MI</address><Point><coordinates>-83.1,42.6</coordinates></Point>"
        "</Placemark></Document></kml>"
    ).encode()

    [placemark] = parse(document)

    assert placemark.name == "Lakeview Police Department"
    assert placemark.coordinates == "-83.1,42.6"


def test_parse_schema_data_fields():
    document = b"""<kml xmlns="http://www.opengis.net/kml/2.2"><Document><Placemark>
        <name>Lakeview Police Department</name><address>Lakeview, MI</address>
        <ExtendedData><SchemaData schemaUrl="#agencies">
          <SimpleData name="Active Date">6/4/2019</SimpleData>
        </SchemaData></ExtendedData></Placemark></Document></kml>"""

    [placemark] = parse(document)

    assert placemark.data == [("Active Date", "6/4/2019")]


def test_parse_kmz_same_as_kml():
    kml = read_capture("map-2021.kml")

    assert parse(make_kmz(kml, extra_entries={"images/icon-1.png": b"\x89PNG"})) == parse(kml)


def test_kmz_without_doc_kml_rejected():
    kmz = make_kmz(read_capture("map-2021.kml"), entry_name="agencies.kml")

    with pytest.raises(SourceError, match="no doc.kml.*'agencies.kml'"):
        parse(kmz)


@pytest.mark.parametrize("entry_name", ["../doc.kml", "/etc/doc.kml", "images/../../doc.kml", "C:/doc.kml"])
def test_kmz_path_traversal_rejected(entry_name):
    kmz = make_kmz(read_capture("map-2021.kml"), extra_entries={entry_name: b"x"})

    with pytest.raises(SourceError, match="points outside the archive"):
        parse(kmz)


def test_kmz_zip_bomb_rejected():
    kmz = make_kmz(b"<kml>" + b" " * 2_000_000 + b"</kml>")

    assert len(kmz) < 50_000
    with pytest.raises(SourceError, match="zip bomb"):
        unpack_kmz(kmz, max_uncompressed_bytes=1_000_000)


def test_kmz_lying_directory_size_rejected():
    kmz = bytearray(make_kmz(b"<kml>" + b" " * 200_000 + b"</kml>"))
    # Rewrite the uncompressed size in the central directory to 100 bytes; the read
    # must still stop at the limit.
    with zipfile.ZipFile(io.BytesIO(bytes(kmz))) as archive:
        real_size = archive.getinfo("doc.kml").file_size
    central = kmz.rfind(b"PK\x01\x02")
    kmz[central + 24 : central + 28] = (100).to_bytes(4, "little")
    local = kmz.find(b"PK\x03\x04")
    kmz[local + 22 : local + 26] = (100).to_bytes(4, "little")

    assert real_size > 1_000
    with pytest.raises(SourceError):
        unpack_kmz(bytes(kmz), max_uncompressed_bytes=1_000)


def test_damaged_kmz_rejected():
    with pytest.raises(SourceError, match="Invalid KMZ archive"):
        parse(b"PK\x03\x04 not really a zip")


def test_xxe_rejected_without_reading_file(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-7731")
    document = read_capture("xxe.kml", LOCAL_PATH=str(secret))

    with pytest.raises(SourceError) as caught:
        parse(document)

    assert "DTD" in str(caught.value)
    assert "TOP-SECRET-7731" not in str(caught.value)


def test_billion_laughs_rejected():
    with pytest.raises(SourceError, match="DTD"):
        parse(read_capture("billion-laughs.kml"))


def test_entity_declaration_without_doctype_check_still_safe():
    # Any ScrapeError is fine here; the point is that nothing expands or crashes.
    document = b'<?xml version="1.0"?><!DOCTYPE kml SYSTEM "http://127.0.0.1:1/kml.dtd"><kml/>'

    with pytest.raises(ScrapeError):
        parse(document)


def test_truncated_document_rejected():
    with pytest.raises(SourceError, match="not well-formed XML.*truncated"):
        parse(read_capture("truncated.kml"))


@pytest.mark.parametrize("data", [b"", b"  \n  "])
def test_empty_document_rejected(data):
    with pytest.raises(SourceError, match="empty"):
        parse(data)


def test_non_kml_root_rejected():
    with pytest.raises(SourceError, match="root is <gpx>, expected <kml>"):
        parse(b'<gpx xmlns="http://www.topografix.com/GPX/1/1"></gpx>')


def test_parse_wrapper_rejected():
    with pytest.raises(SourceError, match="NetworkLink wrapper pointing at 'http://127.0.0.1:9/map.kml'"):
        parse(read_capture("wrapper.kml", SERVER="http://127.0.0.1:9").replace(
            b"/maps/d/kml?forcekml=1&mid=1FakeMapIdForTests", b"/map.kml"
        ))


def test_parse_document_reads_network_link_href():
    document = parse_document(read_capture("wrapper.kml", SERVER="http://127.0.0.1:9"))

    assert document.placemarks == []
    assert document.network_links == ["http://127.0.0.1:9/maps/d/kml?forcekml=1&mid=1FakeMapIdForTests"]


def test_parse_no_placemarks_returns_empty_list():
    assert parse(read_capture("no-placemarks.kml")) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("   ", None),
        ("  Lakeview  Police\n Department ", "Lakeview Police Department"),
        ("<b>Lakeview</b>, MI", "Lakeview, MI"),
        ("Active Date: 1/2/2020<br/>Video Requests: 3", "Active Date: 1/2/2020 Video Requests: 3"),
        ("Police &amp; Fire", "Police & Fire"),
        ("A&nbsp;B", "A B"),
        ("5 < 6", "5 < 6"),
    ],
)
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected

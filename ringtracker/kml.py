"""Parse a Google My Maps KML or KMZ export into placemarks.

The parser rejects DTDs, entity declarations and external references (through
defusedxml), so a hostile document cannot read local files or expand into gigabytes.
Element names are matched without their namespace, because exports have used the KML 2.2
namespace, the older earth.google.com namespaces and none at all.
"""

import html
import io
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree

from ringtracker.errors import SourceError

log = logging.getLogger(__name__)

KMZ_MAGIC = b"PK"
DEFAULT_MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_KMZ_ENTRIES = 10_000

# HTML tags that My Maps and spreadsheet imports leave inside CDATA text. Line-breaking
# tags become a space and inline tags vanish, so "<b>Harbor</b>, TX" stays "Harbor, TX".
_BREAKING_TAG = re.compile(r"</?(?:br|p|div|li)\b[^>]*>", re.IGNORECASE)
_INLINE_TAG = re.compile(r"</?(?:b|i|u|em|strong|span|font|small|big|sup|sub)\b[^>]*>", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
# Control characters and invisible direction or zero-width marks. They never belong in a
# name or address, make two identical-looking agencies differ, and a right-to-left
# override can make a name display as something else.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


@dataclass(frozen=True)
class Placemark:
    """One placemark as written in the document, with text trimmed and unescaped.

    ``row`` is the 1-based position among all placemarks of the document, used to name
    the row in problem reports. ``data`` keeps ExtendedData fields in document order
    under their original names, because normalize matches them case-insensitively.
    """

    row: int
    name: str | None
    address: str | None
    coordinates: str | None
    data: list[tuple[str, str | None]] = field(default_factory=list)
    folder: str | None = None


@dataclass(frozen=True)
class KmlDocument:
    placemarks: list[Placemark]
    network_links: list[str]


def clean_text(text: str | None) -> str | None:
    """Trim text, drop formatting tags, unescape HTML entities, drop control and invisible
    direction characters and collapse whitespace.

    Returns None for missing or blank text.
    """
    if text is None:
        return None
    text = _BREAKING_TAG.sub(" ", text)
    text = _INLINE_TAG.sub("", text)
    text = html.unescape(text)
    text = _INVISIBLE.sub("", text)
    text = _WHITESPACE.sub(" ", text).strip()
    return text or None


def is_kmz(data: bytes) -> bool:
    return data[:2] == KMZ_MAGIC


def unpack_kmz(data: bytes, max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES) -> bytes:
    """Return the doc.kml inside a KMZ archive.

    Raises SourceError for a damaged archive, a missing doc.kml, an entry name that
    would escape the archive folder, or more than ``max_uncompressed_bytes`` of content.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise SourceError(f"Invalid KMZ archive: {error}. Check that the URL serves a KMZ or KML file.") from None

    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_KMZ_ENTRIES:
            raise SourceError(f"KMZ archive has {len(entries):,} entries, more than the {MAX_KMZ_ENTRIES:,} allowed.")
        _check_entry_names(entries)
        total = sum(entry.file_size for entry in entries)
        if total > max_uncompressed_bytes:
            raise SourceError(
                f"KMZ archive would unpack to {total:,} bytes, more than the limit of "
                f"{max_uncompressed_bytes:,} bytes; rejected as a possible zip bomb."
            )
        doc = next((entry for entry in entries if entry.filename.lower() == "doc.kml"), None)
        if doc is None:
            names = ", ".join(repr(entry.filename) for entry in entries[:10]) or "none"
            raise SourceError(f"KMZ archive has no doc.kml at its root (entries: {names}).")
        return _read_entry(archive, doc, max_uncompressed_bytes)


def _check_entry_names(entries: list[zipfile.ZipInfo]) -> None:
    for entry in entries:
        name = entry.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name):
            raise SourceError(f"KMZ archive entry {name!r} points outside the archive; rejected.")


def _read_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, limit: int) -> bytes:
    # The sizes in the zip directory can lie, so count what the decompressor really yields.
    chunks = []
    size = 0
    try:
        with archive.open(entry) as stream:
            while chunk := stream.read(1024 * 1024):
                size += len(chunk)
                if size > limit:
                    raise SourceError(
                        f"{entry.filename} in the KMZ archive unpacks to more than {limit:,} bytes; "
                        "rejected as a possible zip bomb."
                    )
                chunks.append(chunk)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise SourceError(f"Cannot unpack {entry.filename} from the KMZ archive: {error}") from None
    return b"".join(chunks)


def parse_document(data: bytes) -> KmlDocument:
    """Parse KML or KMZ bytes into placemarks and NetworkLink targets.

    Raises SourceError when the data is empty, not well-formed XML, contains a DTD or
    entity declaration, or has no <kml> root element.
    """
    if is_kmz(data):
        data = unpack_kmz(data)
    if not data.strip():
        raise SourceError("The document is empty.")
    root = _parse_xml(data)
    if _local_name(root.tag) != "kml":
        raise SourceError(f"The document root is <{_local_name(root.tag)}>, expected <kml>; this is not a KML file.")

    placemarks = []
    for folder, element in _iter_placemarks(root, folder=None):
        placemarks.append(_read_placemark(element, row=len(placemarks) + 1, folder=folder))
    return KmlDocument(placemarks=placemarks, network_links=_network_link_hrefs(root))


def parse(data: bytes) -> list[Placemark]:
    """Parse KML or KMZ bytes into the list of all placemarks, in document order.

    Placemarks may sit directly under Document or in any depth of Folders. A wrapper
    document that contains only a NetworkLink raises SourceError, because fetch() must
    resolve it first.
    """
    document = parse_document(data)
    if not document.placemarks and document.network_links:
        raise SourceError(
            f"The document is a NetworkLink wrapper pointing at {document.network_links[0]!r} "
            "and contains no placemarks; fetch it with ringtracker.fetch.fetch(), which follows the link."
        )
    log.debug("Parsed %d placemarks", len(document.placemarks))
    return document.placemarks


def _parse_xml(data: bytes) -> Element:
    try:
        return defusedxml.ElementTree.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DTDForbidden:
        raise SourceError("The document contains a DTD (<!DOCTYPE ...>), which KML never needs; rejected.") from None
    except defusedxml.EntitiesForbidden:
        raise SourceError("The document declares XML entities, which KML never needs; rejected.") from None
    except defusedxml.ExternalReferenceForbidden:
        raise SourceError("The document references an external resource, which KML never needs; rejected.") from None
    except ParseError as error:
        raise SourceError(f"The document is not well-formed XML ({error}); it may be truncated or not KML.") from None
    except LookupError as error:
        # expat asks Python's codec registry for an encoding it does not know itself.
        raise SourceError(f"The XML declaration names an encoding Python does not know ({error}); rejected.") from None
    except ValueError as error:
        # expat reads only single-byte codecs from the registry: Shift_JIS, UTF-7 or
        # UTF-32 in the declaration end here.
        raise SourceError(f"The XML declaration names an encoding the XML parser cannot read ({error}); rejected.") from None


def _local_name(tag: object) -> str:
    # Comments and processing instructions have a function as their tag.
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def _children(element: Element, name: str) -> list[Element]:
    return [child for child in element if _local_name(child.tag) == name]


def _child(element: Element, name: str) -> Element | None:
    found = _children(element, name)
    return found[0] if found else None


def _child_text(element: Element, name: str) -> str | None:
    child = _child(element, name)
    return None if child is None else clean_text(child.text)


def _iter_placemarks(element: Element, folder: str | None):
    # An explicit stack instead of recursion: a hostile document can nest thousands of
    # Folders, deeper than Python's recursion limit.
    stack = [(iter(element), folder)]
    while stack:
        children, current = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        kind = _local_name(child.tag)
        if kind == "Placemark":
            yield current, child
        elif kind in ("Document", "Folder"):
            name = _child_text(child, "name") if kind == "Folder" else None
            stack.append((iter(child), name if name is not None else current))


def _read_placemark(element: Element, row: int, folder: str | None) -> Placemark:
    return Placemark(
        row=row,
        name=_child_text(element, "name"),
        address=_child_text(element, "address"),
        coordinates=_point_coordinates(element),
        data=_extended_data(element),
        folder=folder,
    )


def _point_coordinates(element: Element) -> str | None:
    # A Point may sit directly in the Placemark or inside a MultiGeometry.
    for point in element.iter():
        if _local_name(point.tag) == "Point":
            coordinates = _child(point, "coordinates")
            if coordinates is not None and coordinates.text and coordinates.text.strip():
                return coordinates.text.strip()
    return None


def _extended_data(element: Element) -> list[tuple[str, str | None]]:
    extended = _child(element, "ExtendedData")
    if extended is None:
        return []
    fields = []
    for data in _children(extended, "Data"):
        name = (data.get("name") or "").strip()
        if name:
            fields.append((name, _child_text(data, "value")))
    # Exports made from an imported schema use SchemaData/SimpleData instead of Data.
    for schema_data in _children(extended, "SchemaData"):
        for simple in _children(schema_data, "SimpleData"):
            name = (simple.get("name") or "").strip()
            if name:
                fields.append((name, clean_text(simple.text)))
    return fields


def _network_link_hrefs(root: Element) -> list[str]:
    hrefs = []
    for element in root.iter():
        if _local_name(element.tag) != "NetworkLink":
            continue
        # KML 2.0 called the element Url; KML 2.1 and later call it Link.
        link = _child(element, "Link")
        if link is None:
            link = _child(element, "Url")
        href = None if link is None else _child(link, "href")
        if href is not None and href.text and href.text.strip():
            hrefs.append(html.unescape(href.text.strip()))
    return hrefs

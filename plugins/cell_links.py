"""Render source links, agency links and place rows in Datasette's HTML tables.

- URL columns become links only for http and https URLs, opened without a
  referrer, so a `javascript:` or `data:` value in the data stays inert text.
- `agency_id` cells in events link to the agency's page.
- The name of a `listed_as = place` row reads as a place, because the source
  named only a town as a partner, not a particular department.

Every value is escaped with markupsafe before it is placed in markup.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from datasette import hookimpl
from datasette.utils import tilde_encode
from markupsafe import Markup, escape

LINK_COLUMNS = {"source_url", "profile_url", "reported_source_url", "_link"}
PLACE_NOTE = "place named as a partner; the source names no department"


def is_web_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        # An unclosed "[" in the host part; such a value is not a usable link.
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def external_link(url: str) -> Markup:
    url = url.strip()
    return Markup('<a href="{}" rel="noopener noreferrer">{}</a>').format(url, url)


def row_value(row, column: str):
    try:
        return row[column]
    except (IndexError, KeyError):
        return None


@hookimpl
def render_cell(row, value, column, table, database, datasette):
    if database != "ring" or value is None:
        return None
    if column in LINK_COLUMNS:
        if is_web_url(value):
            return external_link(value)
        # Not a web URL: show it as escaped text, never as a link.
        return escape(value)
    if column == "agency_id" and isinstance(value, str):
        href = datasette.urls.row("ring", "agencies", tilde_encode(value))
        return Markup('<a href="{}">{}</a>').format(href, value)
    if column in ("name", "agency_name") and row_value(row, "listed_as") == "place":
        return Markup('{} <em class="place-note">({})</em>').format(value, PLACE_NOTE)
    return None

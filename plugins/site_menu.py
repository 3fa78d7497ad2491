"""Add the site's own pages to the navigation menu of Datasette's pages.

Datasette's table, row, query and database pages have no link back to the
site's home, search or about pages. Datasette's base.html shows the links
this hook returns in its menu, behind the icon at the top right. The site's
own pages (templates/_ring_page.html) have their own navigation bar and do
not show this menu.
"""

from __future__ import annotations

from datasette import hookimpl

DATABASE = "ring"


@hookimpl
def menu_links(datasette):
    urls = datasette.urls
    return [
        {"href": urls.instance(), "label": "Home"},
        {"href": urls.table(DATABASE, "agencies"), "label": "Agencies"},
        {"href": urls.table(DATABASE, "agencies_map"), "label": "Map"},
        {"href": urls.table(DATABASE, "events"), "label": "Events"},
        {"href": urls.path("/search"), "label": "Search"},
        {"href": urls.path("/about"), "label": "About"},
    ]

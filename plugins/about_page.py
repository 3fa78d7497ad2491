"""Supply the About page (templates/pages/about.html) with the data commit and coverage table."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from datasette import hookimpl

log = logging.getLogger(__name__)

DATABASE = "ring"

LATEST_COMMIT_SQL = """
select source, commit_hash, date from snapshots order by date desc limit 1
"""


async def about_figures(datasette) -> dict:
    db = datasette.get_database(DATABASE)
    latest = (await db.execute(LATEST_COMMIT_SQL)).rows
    coverage = []
    query = await datasette.get_canned_query(DATABASE, "coverage_by_year", None)
    if query is None:
        log.error("Canned query coverage_by_year is missing from metadata.yml")
    else:
        coverage = [dict(row) for row in (await db.execute(query["sql"])).rows]
    return {
        "latest_commit": dict(latest[0]) if latest else None,
        "coverage": coverage,
        "repository_url": repository_url(datasette),
    }


def repository_url(datasette) -> str | None:
    """Return the configured repository URL (plugin `ring-site`) when it is an http(s) URL."""
    url = ((datasette.plugin_config("ring-site") or {}).get("repository_url") or "").rstrip("/")
    return url if urlsplit(url).scheme in ("http", "https") else None


@hookimpl
def extra_template_vars(template, datasette):
    if template != "pages/about.html":
        return {}

    async def inner():
        return {"about": await about_figures(datasette)}

    return inner

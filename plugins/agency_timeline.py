"""Supply the agency row page (templates/row-ring-agencies.html) with its timeline.

The timeline lists the agency's events newest first, and every version of
the agency that git-history recorded in each data file it comes from. Each
entry links to its commit when the `ring-site` plugin configuration sets
`repository_url` (an http or https URL such as a GitHub repository);
otherwise the page shows the short hash alone.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from datasette import hookimpl
from datasette.utils import urlsafe_components

log = logging.getLogger(__name__)

DATABASE = "ring"
SHORT_HASH_LENGTH = 8
# git-history namespace (and so table name) for each data file. Table names
# cannot be bound parameters, so only these fixed names reach the SQL.
NAMESPACES = {
    "data/agencies.json": "ring_map",
    "data/reported-partnerships.csv": "reported",
}
VERSION_META_COLUMNS = {
    "_id", "_item", "_version", "_commit", "_item_full_hash",
    "_commit_at", "_commit_hash", "_changed_columns",
}

EVENTS_SQL = """
select id, event, date, source, commit_hash, changes, agency_name, state
from events
where agency_id = :agency_id
order by date desc, id desc
"""

SOURCE_IDS_SQL = """
select distinct source, source_agency_id from events where agency_id = :agency_id
"""


def commit_url(repository_url: str | None, commit_hash: str | None) -> str | None:
    """Return the web URL of a commit, or None when no http(s) repository is configured."""
    if not repository_url or not commit_hash:
        return None
    if urlsplit(repository_url).scheme not in ("http", "https"):
        log.warning("Ignoring repository_url %r: it is not an http or https URL", repository_url)
        return None
    return f"{repository_url.rstrip('/')}/commit/{commit_hash}"


def commit_link(repository_url: str | None, commit_hash: str | None) -> dict:
    return {
        "hash": commit_hash,
        "short": (commit_hash or "")[:SHORT_HASH_LENGTH],
        "url": commit_url(repository_url, commit_hash),
    }


def parse_changes(changes: str | None) -> list[dict]:
    if not changes:
        return []
    try:
        parsed = json.loads(changes)
    except ValueError:
        log.warning("Unreadable changes JSON in events: %.200r", changes)
        return []
    return [
        {"field": field, "old": values[0], "new": values[1]}
        for field, values in sorted(parsed.items())
        if isinstance(values, list) and len(values) == 2
    ]


async def agency_events(db, agency_id: str, repository_url: str | None) -> list[dict]:
    results = await db.execute(EVENTS_SQL, {"agency_id": agency_id})
    events = []
    for row in results.rows:
        event = dict(row)
        event["commit"] = commit_link(repository_url, row["commit_hash"])
        event["changes"] = parse_changes(row["changes"])
        events.append(event)
    return events


async def source_ids(db, agency_id: str) -> list[tuple[str, str]]:
    results = await db.execute(SOURCE_IDS_SQL, {"agency_id": agency_id})
    pairs = [(row["source"], row["source_agency_id"] or agency_id) for row in results.rows]
    return pairs or [(source, agency_id) for source in NAMESPACES]


async def agency_versions(db, agency_id: str, repository_url: str | None) -> list[dict]:
    versions = []
    existing = set(await db.table_names()) | set(await db.view_names())
    for source, source_id in await source_ids(db, agency_id):
        namespace = NAMESPACES.get(source)
        if namespace is None or f"{namespace}_version_detail" not in existing:
            continue
        sql = (
            f"select * from {namespace}_version_detail "
            f"where _item in (select _id from {namespace} where id = :source_id) "
            "order by _version desc"
        )
        results = await db.execute(sql, {"source_id": source_id})
        for row in results.rows:
            values = [
                {"field": column, "value": row[column]}
                for column in row.keys()
                if column not in VERSION_META_COLUMNS and row[column] is not None
            ]
            versions.append({
                "source": source,
                "version": row["_version"],
                "date": row["_commit_at"],
                "commit": commit_link(repository_url, row["_commit_hash"]),
                "values": values,
            })
    versions.sort(key=lambda version: (version["date"] or "", version["version"]), reverse=True)
    return versions


@hookimpl
def extra_template_vars(view_name, table, database, request, datasette):
    if view_name != "row" or database != DATABASE or table != "agencies" or request is None:
        return {}

    async def inner():
        components = urlsafe_components(request.url_vars["pks"])
        agency_id = components[0]
        config = datasette.plugin_config("ring-site") or {}
        repository_url = config.get("repository_url") or None
        db = datasette.get_database(DATABASE)
        return {
            "timeline": {
                "events": await agency_events(db, agency_id, repository_url),
                "versions": await agency_versions(db, agency_id, repository_url),
            }
        }

    return inner

"""Supply the agency row page (templates/row-ring-agencies.html) with its timeline.

`answer` states at the top of the page whether and how the agency is a Ring
partner: since when it is on Ring's map (or when it left), and which page
reported it. The timeline lists the agency's events newest first, and every
version of the agency that git-history recorded in each data file it comes
from. Each entry links to its commit when the `ring-site` plugin
configuration sets `repository_url` (an http or https URL such as a GitHub
repository). Without it, the page shows the short hash alone.
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
MAP_SOURCE = "data/agencies.json"
REPORTED_SOURCE = "data/reported-partnerships.csv"
# git-history namespace (and so table name) for each data file. Table names
# cannot be bound parameters, so only these fixed names reach the SQL.
NAMESPACES = {
    MAP_SOURCE: "ring_map",
    REPORTED_SOURCE: "reported",
}
VERSION_META_COLUMNS = {
    "_id", "_item", "_version", "_commit", "_item_full_hash",
    "_commit_at", "_commit_hash", "_changed_columns",
}

EVENTS_SQL = """
select id, event, date, source, commit_hash, changes, agency_name, state, baseline
from events
where agency_id = :agency_id
order by date desc, id desc
"""

SOURCE_IDS_SQL = """
select distinct source, source_agency_id from events where agency_id = :agency_id
"""

AGENCY_SQL = "select * from agencies where id = :agency_id"

# The map's own Active Date. agencies.joined falls back to a reported join
# date when the map gives none, so it does not show which source gave the date.
MAP_ACTIVE_DATE_SQL = "select active_date from ring_map where id = :source_id"


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


def web_link(url: str | None) -> dict | None:
    """Return the URL and its host name as link text, with url None unless it is http(s)."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        # An unclosed "[" in the host part; such a value is not a usable link.
        return {"url": None, "text": url}
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return {"url": None, "text": url}
    return {"url": url, "text": parts.hostname.removeprefix("www.")}


async def map_active_date(db, agency_id: str) -> str | None:
    if "ring_map" not in await db.table_names():
        return None
    pairs = dict(await source_ids(db, agency_id))
    results = await db.execute(
        MAP_ACTIVE_DATE_SQL, {"source_id": pairs.get(MAP_SOURCE, agency_id)}
    )
    return results.rows[0]["active_date"] if results.rows else None


def partnership_answer(agency: dict, active_date: str | None) -> dict:
    """Return what the page states first: the map listing and the cited report, where present.

    Dates are cut to the day, because first_seen and ended_on are commit times.
    """
    sources = agency.get("source") or ""
    on_map = MAP_SOURCE in sources
    answer = {"map": None, "report": None}
    if on_map:
        ended = agency.get("status") == "ended" and agency.get("ended_on")
        answer["map"] = {
            "first_seen": (agency.get("first_seen") or "")[:10],
            "active_date": active_date,
            "ended_on": agency["ended_on"][:10] if ended else None,
        }
    if REPORTED_SOURCE in sources:
        withdrawn = agency.get("status") == "withdrawn" and agency.get("ended_on")
        answer["report"] = {
            "reported_on": agency.get("reported_on"),
            "link": web_link(agency.get("reported_source_url") or agency.get("source_url")),
            # A map row's joined is the map's Active Date, not the report's date.
            "joined": None if on_map else agency.get("joined"),
            "also_on_map": on_map,
            "withdrawn_on": agency["ended_on"][:10] if withdrawn else None,
        }
    return answer


async def agency_answer(db, agency_id: str) -> dict | None:
    results = await db.execute(AGENCY_SQL, {"agency_id": agency_id})
    if not results.rows:
        return None
    return partnership_answer(dict(results.rows[0]), await map_active_date(db, agency_id))


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
            "answer": await agency_answer(db, agency_id),
            "timeline": {
                "events": await agency_events(db, agency_id, repository_url),
                "versions": await agency_versions(db, agency_id, repository_url),
            }
        }

    return inner

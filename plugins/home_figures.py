"""Supply the home page (templates/index.html) with headline figures and recent events.

Every figure comes from one read-only query with bound parameters. The
templates escape all values (Jinja autoescape is on in Datasette).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import weakref

from datasette import hookimpl

log = logging.getLogger(__name__)

DATABASE = "ring"
RECENT_LIMIT = 10

HEADLINE_SQL = """
select
  (select count(*) from agencies where status = 'active') as agencies_active,
  (select count(*) from agencies where status = 'ended') as agencies_ended,
  (select count(*) from agencies where status = 'reported') as agencies_reported,
  (select count(distinct state) from agencies where status in ('active', 'reported')) as states,
  (select count(distinct agency_id) from events
     where source = 'data/agencies.json' and event = 'joined' and baseline = 0
       and date >= :month_start)
     as added_this_month,
  (select count(*) from snapshots where source = 'data/agencies.json') as map_snapshots,
  (select max(date) from snapshots) as last_updated
"""

# The latest snapshot that has video request counts: the map stopped showing
# them after 2020, so the newest snapshot may have none.
VIDEO_REQUESTS_SQL = """
select date, video_requests_total from snapshots
where video_requests_total is not null
order by date desc
limit 1
"""

# Only the map's snapshots date a join, and not its first one, which lists
# every agency already on the map. A reported row's commit date is when this
# project added it, so those rows are listed by the date of their report.
RECENT_JOINS_SQL = """
select agency_id, agency_name, state, source, date from events
where source = 'data/agencies.json' and event = 'joined' and baseline = 0
order by date desc, id desc
limit :limit
"""

RECENT_REPORTS_SQL = """
select id as agency_id, name as agency_name, state, listed_as, reported_on
from agencies
where status = 'reported' and reported_on is not null
order by reported_on desc, name
limit :limit
"""

# Built only when the repository has data/state-populations.csv.
POPULATIONS_SQL = """
select state, population, as_of, source_url from state_populations order by state
"""

LATEST_UPDATES_SQL = """
select events.agency_id, events.agency_name, events.state, events.event, events.date,
  events.source, events.baseline, events.changes, agencies.listed_as
from events left join agencies on agencies.id = events.agency_id
order by events.date desc, events.id desc
limit :limit
"""


def month_start(now: dt.datetime) -> str:
    """Return the ISO 8601 start of the UTC month that contains `now`."""
    start = now.astimezone(dt.timezone.utc).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    return start.isoformat()


async def rows(db, sql: str, params: dict | None = None) -> list[dict]:
    results = await db.execute(sql, params or {})
    return [dict(row) for row in results.rows]


def changed_fields(changes: str | None) -> list[str]:
    """Return the field names of a `changed` event's JSON, or [] when it has none."""
    if not changes:
        return []
    try:
        return sorted(json.loads(changes))
    except (ValueError, TypeError):
        log.warning("Unreadable changes JSON in events: %.200r", changes)
        return []


async def canned_rows(datasette, db, query_name: str) -> list[dict]:
    query = await datasette.get_canned_query(DATABASE, query_name, None)
    if query is None:
        log.error("Canned query %s is missing from metadata.yml", query_name)
        return []
    return await rows(db, query["sql"], {})


# Figures by Datasette instance and UTC month. An immutable database cannot
# change while it is served, so its figures are computed once a month instead
# of on every request. A mutable database is queried every time.
FIGURES_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def cached_home_figures(datasette) -> dict:
    db = datasette.get_database(DATABASE)
    if db.is_mutable:
        return await home_figures(datasette)
    month = month_start(dt.datetime.now(dt.timezone.utc))
    cached = FIGURES_CACHE.get(datasette)
    if cached is None or cached[0] != month:
        cached = (month, await home_figures(datasette))
        FIGURES_CACHE[datasette] = cached
    return cached[1]


async def home_figures(datasette) -> dict:
    db = datasette.get_database(DATABASE)
    now = dt.datetime.now(dt.timezone.utc)
    headline = (await rows(db, HEADLINE_SQL, {"month_start": month_start(now)}))[0]
    video = await rows(db, VIDEO_REQUESTS_SQL)
    updates = await rows(db, LATEST_UPDATES_SQL, {"limit": RECENT_LIMIT})
    for update in updates:
        update["changed_fields"] = changed_fields(update.pop("changes"))
    state_counts = await canned_rows(datasette, db, "state_counts")
    populations = await rows(db, POPULATIONS_SQL) if await db.table_exists("state_populations") else []
    add_per_million(state_counts, populations)
    return {
        "figures": headline,
        "current_month": now.strftime("%B %Y"),
        "video_requests": video[0] if video else None,
        "recent_joins": await rows(db, RECENT_JOINS_SQL, {"limit": RECENT_LIMIT}),
        "recent_reports": await rows(db, RECENT_REPORTS_SQL, {"limit": RECENT_LIMIT}),
        "latest_updates": updates,
        "monthly_joins": await canned_rows(datasette, db, "monthly_joins"),
        "state_counts": state_counts,
        "populations": population_summary(populations),
    }


def add_per_million(state_counts: list[dict], populations: list[dict]) -> None:
    """Add agencies (on the map or reported) per million residents where the state has a population."""
    by_state = {row["state"]: row["population"] for row in populations}
    for row in state_counts:
        population = by_state.get(row["state"])
        listed = (row["active"] or 0) + (row["reported"] or 0)
        row["per_million"] = round(listed * 1_000_000 / population, 1) if population else None


def population_summary(populations: list[dict]) -> dict | None:
    """Return the states covered and the distinct dates and sources, or None without populations."""
    if not populations:
        return None
    return {
        "states": len(populations),
        "as_of": sorted({row["as_of"] for row in populations}),
        "sources": sorted({row["source_url"] for row in populations}),
    }


@hookimpl
def extra_template_vars(template, datasette):
    if template != "index.html":
        return {}

    async def inner():
        return {"ring": await cached_home_figures(datasette)}

    return inner

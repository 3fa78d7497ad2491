"""Supply the per-state page (templates/pages/state/{state}.html) with its figures.

The page path carries a USPS code. Anything that is not two capital letters,
or a code with no agency in the data, gets `state_page = None`, and the
template then responds 404.
"""

from __future__ import annotations

import re

from datasette import hookimpl

DATABASE = "ring"
STATE_PATH = re.compile(r"^/state/(?P<state>[A-Z]{2})$")
RECENT_EVENTS_LIMIT = 50

COUNTS_SQL = """
select count(*) as total,
  coalesce(sum(status = 'active'), 0) as active,
  coalesce(sum(status = 'reported'), 0) as reported,
  coalesce(sum(status = 'ended'), 0) as ended,
  coalesce(sum(listed_as = 'place'), 0) as places
from agencies where state = :state
"""

TYPES_SQL = """
select coalesce(agency_type, 'place or unknown') as agency_type, count(*) as agencies
from agencies where state = :state
group by 1 order by 2 desc, 1
"""

AGENCIES_SQL = """
select id, name, agency_type, listed_as, city, county, joined, status
from agencies where state = :state
order by name
"""

EVENTS_SQL = """
select agency_id, agency_name, event, date from events
where state = :state
order by date desc, id desc
limit :limit
"""


async def query_rows(db, sql: str, params: dict) -> list[dict]:
    results = await db.execute(sql, params)
    return [dict(row) for row in results.rows]


async def state_figures(datasette, state: str) -> dict | None:
    db = datasette.get_database(DATABASE)
    params = {"state": state}
    counts = (await query_rows(db, COUNTS_SQL, params))[0]
    if not counts["total"]:
        return None
    return {
        "state": state,
        "counts": counts,
        "types": await query_rows(db, TYPES_SQL, params),
        "agencies": await query_rows(db, AGENCIES_SQL, params),
        "events": await query_rows(db, EVENTS_SQL, {**params, "limit": RECENT_EVENTS_LIMIT}),
    }


@hookimpl
def extra_template_vars(template, request, datasette):
    if template != "pages/state/{state}.html" or request is None:
        return {}

    async def inner():
        match = STATE_PATH.match(request.path)
        if not match:
            return {"state_page": None}
        return {"state_page": await state_figures(datasette, match.group("state"))}

    return inner

"""Supply the per-state page (templates/pages/state/{state}.html) with its figures.

The canonical page path carries a USPS code in capitals: /state/AL. A code in
lower case or a full state name as the `us` package spells it, in any case
(/state/al, /state/Alabama, /state/new~20york), gets
`state_redirect`, the canonical path, and the template redirects there with
302. Any other path, or a code with no agency in the data, gets
`state_page = None`, and the template then responds 404.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import us
from datasette import hookimpl
from datasette.utils import tilde_decode

DATABASE = "ring"
STATE_PATH = re.compile(r"^/state/(?P<state>[^/]+)$")
CANONICAL_CODE = re.compile(r"^[A-Z]{2}$")
RECENT_EVENTS_LIMIT = 50
STATES_BY_NAME = {state.name.casefold(): state for state in us.states.STATES_AND_TERRITORIES}

# dated_by_month counts the join dates the monthly chart can place, because the
# chart leaves out dates given only as a year.
COUNTS_SQL = """
select count(*) as total,
  coalesce(sum(status = 'active'), 0) as active,
  coalesce(sum(status = 'reported'), 0) as reported,
  coalesce(sum(status = 'ended'), 0) as ended,
  coalesce(sum(listed_as = 'place'), 0) as places,
  coalesce(sum(joined is not null and joined != ''), 0) as dated,
  coalesce(sum(length(joined) >= 7), 0) as dated_by_month,
  (select count(*) from snapshots where source = 'data/agencies.json') as map_snapshots
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
select agency_id, agency_name, event, date, source, baseline from events
where state = :state
order by date desc, id desc
limit :limit
"""


def lookup_state(text: str) -> us.states.State | None:
    """Return the state or territory a USPS code or full name names, in any case."""
    text = " ".join(text.split())
    if len(text) == 2 and text.isalpha():
        return us.states.lookup(text.upper(), field="abbr")
    return STATES_BY_NAME.get(text.casefold())


def state_label(code: str) -> dict:
    """Return the code, the full name and a label such as "Alabama (AL)".

    A code that `us` does not know is its own name and label.
    """
    state = us.states.lookup(code, field="abbr")
    name = state.name if state else code
    return {"code": code, "name": name, "label": f"{name} ({code})" if state else code}


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
        **state_label(state),
        "counts": counts,
        "types": await query_rows(db, TYPES_SQL, params),
        "agencies": await query_rows(db, AGENCIES_SQL, params),
        "events": await query_rows(db, EVENTS_SQL, {**params, "limit": RECENT_EVENTS_LIMIT}),
    }


async def state_context(datasette, path: str) -> dict:
    match = STATE_PATH.match(path)
    if not match:
        return {"state_page": None, "state_redirect": None}
    text = match.group("state")
    if CANONICAL_CODE.match(text):
        return {"state_page": await state_figures(datasette, text), "state_redirect": None}
    # Datasette redirects a path that contains %XX to its ~XX form first.
    state = lookup_state(tilde_decode(text))
    if state is None:
        return {"state_page": None, "state_redirect": None}
    return {"state_page": None, "state_redirect": "/state/" + quote(state.abbr)}


@hookimpl
def extra_template_vars(template, request, datasette):
    if template != "pages/state/{state}.html" or request is None:
        return {}

    async def inner():
        path = request.scope.get("route_path", request.scope["path"])
        return await state_context(datasette, path)

    return inner

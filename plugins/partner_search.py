"""Answer the home page question "Is my local agency a partner?" on /search.

People type a place the way they write an address: "Huntsville, AL",
"Huntsville Alabama", "Madison County, AL". Commas are dropped, and a trailing
USPS code or full state name (as the `us` package spells it, in any case)
becomes a filter on the state column. The rest of the text is matched against
the agencies_fts full-text index (name, city, county, state) as one phrase
whose last word may be a prefix, so punctuation in user input cannot form FTS
syntax. When the state-filtered search finds nothing, the whole text is
searched once more as a phrase, so an agency whose name ends in a state name
("Fort Washington") is still found.

The page template (templates/pages/search.html) shows the matches, or states
plainly that the data has no match and what the data covers.
"""

from __future__ import annotations

from typing import NamedTuple

import us
from datasette import hookimpl

DATABASE = "ring"
MAX_QUERY_LENGTH = 200
RESULT_LIMIT = 100
# Words in the longest state or territory name in `us` ("District of Columbia").
MAX_STATE_NAME_WORDS = max(len(state.name.split()) for state in us.states.STATES_AND_TERRITORIES)
STATES_BY_NAME = {state.name.casefold(): state for state in us.states.STATES_AND_TERRITORIES}

RESULT_COLUMNS = """
select agencies.id, agencies.name, agencies.agency_type, agencies.listed_as,
  agencies.city, agencies.county, agencies.state, agencies.joined, agencies.status
"""

SEARCH_SQL = RESULT_COLUMNS + """
from agencies_fts
  join agencies on agencies.rowid = agencies_fts.rowid
where agencies_fts match :phrase
  and (:state is null or agencies.state = :state)
order by agencies_fts.rank
limit :limit
"""

STATE_ONLY_SQL = RESULT_COLUMNS + """
from agencies
where agencies.state = :state
order by agencies.name
limit :limit
"""

COVERAGE_SQL = """
select
  (select count(*) from agencies) as agencies,
  (select min(date) from snapshots where source = 'data/agencies.json') as map_first,
  (select max(date) from snapshots where source = 'data/agencies.json') as map_last,
  (select count(*) from agencies where source like '%reported-partnerships%') as reported
"""


# A NamedTuple, not a dataclass: Datasette loads plugins/ files without adding
# them to sys.modules, which dataclasses need when annotations are strings.
class ParsedQuery(NamedTuple):
    """Search text split into the words to match and an optional state filter."""

    text: str
    state: us.states.State | None


def state_from_words(words: list[str]) -> us.states.State | None:
    """Return the state that these words name exactly, as a USPS code or a full name."""
    if len(words) == 1 and len(words[0]) == 2 and words[0].isalpha():
        return us.states.lookup(words[0].upper(), field="abbr")
    return STATES_BY_NAME.get(" ".join(words).casefold())


def parse_query(text: str) -> ParsedQuery:
    """Split a trailing state code or name off the search text, ignoring commas and extra spaces."""
    words = text.replace(",", " ").split()
    # Longest names first, so "West Virginia" is not read as "West" plus Virginia.
    for length in range(min(MAX_STATE_NAME_WORDS, len(words)), 0, -1):
        state = state_from_words(words[-length:])
        if state is not None:
            return ParsedQuery(" ".join(words[:-length]), state)
    return ParsedQuery(" ".join(words), None)


def fts_phrase(text: str) -> str:
    """Quote free text as one FTS5 phrase with a prefix match on its last word."""
    return '"' + text.replace('"', '""') + '" *'


async def matching_rows(db, parsed: ParsedQuery, full_text: str) -> tuple[list[dict], bool]:
    """Return the matching rows, and whether the state filter was applied to them."""
    state = parsed.state.abbr if parsed.state else None
    if parsed.text:
        params = {"phrase": fts_phrase(parsed.text), "state": state, "limit": RESULT_LIMIT}
        results = await db.execute(SEARCH_SQL, params)
    else:
        results = await db.execute(STATE_ONLY_SQL, {"state": state, "limit": RESULT_LIMIT})
    rows = [dict(row) for row in results.rows]
    if rows or state is None:
        return rows, state is not None
    whole_phrase = " ".join(full_text.replace(",", " ").split())
    params = {"phrase": fts_phrase(whole_phrase), "state": None, "limit": RESULT_LIMIT}
    results = await db.execute(SEARCH_SQL, params)
    rows = [dict(row) for row in results.rows]
    return rows, not rows


async def search(datasette, text: str) -> dict:
    db = datasette.get_database(DATABASE)
    coverage = dict((await db.execute(COVERAGE_SQL)).rows[0])
    page = {"query": text, "results": [], "coverage": coverage, "error": None,
            "place": None, "state": None}
    if not text:
        return page
    if len(text) > MAX_QUERY_LENGTH:
        page["query"] = text[:MAX_QUERY_LENGTH]
        page["error"] = (f"The search text is {len(text)} characters long; "
                         f"use at most {MAX_QUERY_LENGTH}.")
        return page
    parsed = parse_query(text)
    page["results"], state_applied = await matching_rows(db, parsed, text)
    if state_applied:
        page["place"] = parsed.text
        page["state"] = {"abbr": parsed.state.abbr, "name": parsed.state.name}
    return page


@hookimpl
def extra_template_vars(template, request, datasette):
    if template != "pages/search.html" or request is None:
        return {}

    async def inner():
        text = " ".join((request.args.get("q") or "").split())
        return {"partner_search": await search(datasette, text)}

    return inner

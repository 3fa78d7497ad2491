"""Answer the home page question "Is my local agency a partner?" on /search.

The query text is matched against the agencies_fts full-text index (name,
city, county, state) as one phrase whose last word may be a prefix, so
punctuation in user input cannot form FTS syntax. The page template
(templates/pages/search.html) shows the matches, or says plainly that the
data has no match and what the data covers.
"""

from __future__ import annotations

from datasette import hookimpl

DATABASE = "ring"
MAX_QUERY_LENGTH = 200
RESULT_LIMIT = 100

SEARCH_SQL = """
select agencies.id, agencies.name, agencies.agency_type, agencies.listed_as,
  agencies.city, agencies.county, agencies.state, agencies.joined, agencies.status
from agencies_fts
  join agencies on agencies.rowid = agencies_fts.rowid
where agencies_fts match :phrase
order by agencies_fts.rank
limit :limit
"""

COVERAGE_SQL = """
select
  (select count(*) from agencies) as agencies,
  (select min(date) from snapshots where source = 'data/agencies.json') as map_first,
  (select max(date) from snapshots where source = 'data/agencies.json') as map_last,
  (select count(*) from agencies where source like '%reported-partnerships%') as reported
"""


def fts_phrase(text: str) -> str:
    """Quote free text as one FTS5 phrase with a prefix match on its last word."""
    return '"' + text.replace('"', '""') + '" *'


async def search(datasette, text: str) -> dict:
    db = datasette.get_database(DATABASE)
    coverage = dict((await db.execute(COVERAGE_SQL)).rows[0])
    if not text:
        return {"query": "", "results": [], "coverage": coverage, "error": None}
    if len(text) > MAX_QUERY_LENGTH:
        return {
            "query": text[:MAX_QUERY_LENGTH],
            "results": [],
            "coverage": coverage,
            "error": f"The search text is {len(text)} characters long; "
                     f"use at most {MAX_QUERY_LENGTH}.",
        }
    results = await db.execute(SEARCH_SQL, {"phrase": fts_phrase(text), "limit": RESULT_LIMIT})
    return {
        "query": text,
        "results": [dict(row) for row in results.rows],
        "coverage": coverage,
        "error": None,
    }


@hookimpl
def extra_template_vars(template, request, datasette):
    if template != "pages/search.html" or request is None:
        return {}

    async def inner():
        text = " ".join((request.args.get("q") or "").split())
        return {"partner_search": await search(datasette, text)}

    return inner

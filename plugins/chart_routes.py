"""Serve charts as SVG rendered on the server from Vega-Lite specs with vl-convert.

Routes:
  /-/ring/charts/monthly-joins.svg            agencies by month joined
  /-/ring/charts/monthly-joins.svg?state=OR   the same for one state
  /-/ring/charts/states.svg                   choropleth of active agencies per state
  /-/ring/charts/states.svg?measure=NAME      the same shaded by another measure (MEASURES)

The pages embed these as <img> with alt text and a table of the same numbers
next to them, so no chart needs JavaScript in the browser. State outlines come
from us-atlas 3 (static/states-10m.json, ISC licence), keyed by FIPS code.
Colours use the sequential "blues" scheme, which stays readable for the
common forms of colour blindness.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from functools import lru_cache
from pathlib import Path

import us
import vl_convert
from datasette import hookimpl
from datasette.utils.asgi import Response

log = logging.getLogger(__name__)

DATABASE = "ring"
ATLAS_PATH = Path(__file__).resolve().parent.parent / "static" / "states-10m.json"
STATE_PATTERN = re.compile(r"^[A-Z]{2}$")
SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
BAR_COLOUR = "#1f5fa8"

MONTHLY_SQL = """
select substr(joined, 1, 7) as month, count(*) as agencies
from agencies
where length(joined) >= 7 and (:state = '' or state = :state)
group by month
order by month
"""

# What the state map can be shaded by: ?measure=NAME picks the SQL (which
# returns state and value) and the chart's title and legend.
MEASURES = {
    "agencies": (
        """
        select state, count(*) as value from agencies
        where status in ('active', 'reported')
        group by state
        """,
        "Agencies on Ring's map or reported, per state",
        "Agencies",
    ),
    "video_requests": (
        """
        select state, sum(video_requests) as value from agencies
        where status = 'active' and video_requests is not null
        group by state
        """,
        "Video requests in the quarter, per state (map agencies with counts)",
        "Video requests",
    ),
    # Only states with a population row get a value; the others are drawn
    # as having no data rather than as zero.
    "agencies_per_million": (
        """
        select state_populations.state,
          round(count(agencies.id) * 1000000.0 / state_populations.population, 1) as value
        from state_populations
        left join agencies on agencies.state = state_populations.state
          and agencies.status in ('active', 'reported')
        group by state_populations.state
        """,
        "Agencies on Ring's map or reported, per million residents",
        "Per million",
    ),
}
# Measures that need a table the build creates only from an optional data file.
MEASURE_TABLES = {"agencies_per_million": "state_populations"}
NO_DATA_COLOUR = "#d9d9d9"


@lru_cache(maxsize=1)
def states_topology() -> dict:
    with open(ATLAS_PATH, encoding="utf-8") as atlas:
        return json.load(atlas)


def fips_by_code() -> dict[str, str]:
    return {state.abbr: state.fips for state in us.states.STATES_AND_TERRITORIES + [us.states.DC]}


def monthly_spec(rows: list[dict], title: str) -> dict:
    # Vega picks about five ticks whatever the range, which with counts of one
    # or two gives repeated labels (0, 1, 1, 2, 2) after rounding.
    tick_count = min(5, max([row["agencies"] for row in rows] + [1]))
    return {
        "$schema": SCHEMA,
        "title": title,
        "width": 640,
        "height": 220,
        "data": {"values": rows},
        "mark": {"type": "bar", "color": BAR_COLOUR},
        "encoding": {
            "x": {"field": "month", "type": "temporal", "timeUnit": "yearmonth",
                  "title": "Month joined"},
            "y": {"field": "agencies", "type": "quantitative", "title": "Agencies",
                  "axis": {"format": "d", "tickMinStep": 1, "tickCount": tick_count}},
        },
    }


def choropleth_spec(counts: dict[str, float], title: str, legend: str, missing: float | None = 0) -> dict:
    """Shade states by `counts`; a state absent from it gets `missing` (None: no data, grey)."""
    fips = fips_by_code()
    values = [
        {"fips": fips[code], "state": code, "value": counts.get(code, missing)}
        for code in sorted(fips)
    ]
    return {
        "$schema": SCHEMA,
        "title": title,
        "width": 640,
        "height": 400,
        "data": {"values": states_topology(), "format": {"type": "topojson", "feature": "states"}},
        "transform": [{
            "lookup": "id",
            "from": {"data": {"values": values}, "key": "fips", "fields": ["state", "value"]},
        }],
        "projection": {"type": "albersUsa"},
        # invalid: None keeps the states without a value, so the condition greys them.
        "mark": {"type": "geoshape", "stroke": "#ffffff", "strokeWidth": 0.5, "invalid": None},
        "encoding": {
            "color": {"field": "value", "type": "quantitative", "title": legend,
                      "scale": {"scheme": "blues"},
                      "condition": {"test": "!isValid(datum.value)", "value": NO_DATA_COLOUR}},
        },
    }


# Rendered charts by spec. The database is served immutable, so a spec (which
# embeds its data) always renders the same SVG; about 60 charts exist at most
# (one per state, the national one and the map), so the cap is never reached.
SVG_CACHE: dict[str, str] = {}
SVG_CACHE_MAX = 256


PATH_DATA = re.compile(r'( d=")([^"]*)(")')
DECIMAL = re.compile(r"-?\d+\.\d+")


def round_path_data(svg: str) -> str:
    """Round the coordinates in path data to a tenth of a pixel.

    vl-convert writes three decimals. The outlines are most of the state
    map's weight, and a tenth of a pixel is already finer than a screen shows.
    """
    def round_decimals(match: re.Match) -> str:
        return match[1] + DECIMAL.sub(lambda number: f"{float(number[0]):.1f}", match[2]) + match[3]

    return PATH_DATA.sub(round_decimals, svg)


async def render_svg(spec: dict) -> Response:
    key = json.dumps(spec, sort_keys=True)
    svg = SVG_CACHE.get(key)
    if svg is None:
        # vl-convert runs a JavaScript engine, and the state map took about 0.7 s
        # on first use in development, so it runs in a worker thread.
        svg = round_path_data(await asyncio.to_thread(vl_convert.vegalite_to_svg, spec))
        if len(SVG_CACHE) >= SVG_CACHE_MAX:
            SVG_CACHE.pop(next(iter(SVG_CACHE)))
        SVG_CACHE[key] = svg
    return Response(
        svg,
        content_type="image/svg+xml; charset=utf-8",
        headers={"Cache-Control": "max-age=300"},
    )


async def monthly_joins_chart(datasette, request):
    state = request.args.get("state", "")
    if state and not STATE_PATTERN.match(state):
        return Response.text(
            f"state={state!r} is not a two-letter USPS code in capitals; use a code such as OR",
            status=400,
        )
    db = datasette.get_database(DATABASE)
    results = await db.execute(MONTHLY_SQL, {"state": state})
    rows = [{"month": row["month"] + "-01", "agencies": row["agencies"]} for row in results.rows]
    title = f"Agencies in {state} by month joined" if state else "Agencies by month joined"
    return await render_svg(monthly_spec(rows, title))


async def states_chart(datasette, request):
    measure = request.args.get("measure", "agencies")
    if measure not in MEASURES:
        return Response.text(
            f"measure={measure!r} is not one of {', '.join(MEASURES)}; use one of those",
            status=400,
        )
    sql, title, legend = MEASURES[measure]
    db = datasette.get_database(DATABASE)
    table = MEASURE_TABLES.get(measure)
    if table and not await db.table_exists(table):
        return Response.text(
            f"measure={measure!r} needs the {table} table, which this database lacks; "
            "add data/state-populations.csv as the README describes and rebuild",
            status=404,
        )
    results = await db.execute(sql)
    counts = {row["state"]: row["value"] for row in results.rows}
    missing = None if table else 0
    return await render_svg(choropleth_spec(counts, title, legend, missing))


@hookimpl
def register_routes():
    return [
        (r"^/-/ring/charts/monthly-joins\.svg$", monthly_joins_chart),
        (r"^/-/ring/charts/states\.svg$", states_chart),
    ]

"""Reject canned-query requests whose named parameters are invalid, with HTTP 400.

SQL cannot raise a readable error for a bad date or a negative radius: the
query would just return no rows, which reads as "no agency there". This ASGI
wrapper checks the parameters of the `ring` database's canned queries by name
before Datasette runs them. A blank value passes, because Datasette shows the
query form with blank parameters and each query returns no rows for them.

Rules, by parameter name:
  state        a USPS code of a state, territory or DC, in either case
  start, end   a date as YYYY-MM-DD, a month as YYYY-MM or a year as YYYY,
               the precisions a join date can have; start not after end
  since        a date as YYYY-MM-DD
  lat          decimal degrees, -90 to 90
  lon          decimal degrees, -180 to 180
  km           a positive number of kilometres, at most MAX_RADIUS_KM
  agency_type  police, sheriff, fire or other
  q, county    at most MAX_TEXT_LENGTH characters

Some queries need a group of parameters together (REQUIRED_TOGETHER): a
request that gives one of them needs the others too, because the query
returns no rows when any is blank. A request that gives none of them still
shows the form.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from urllib.parse import parse_qsl

import us
from datasette import hookimpl
from datasette.utils.asgi import Request, Response

log = logging.getLogger(__name__)

DATABASE = "ring"
MAX_RADIUS_KM = 5000.0
MAX_TEXT_LENGTH = 200
AGENCY_TYPES = ("police", "sheriff", "fire", "other")
STATE_CODES = {state.abbr for state in us.states.STATES_AND_TERRITORIES} | {us.states.DC.abbr}
DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MONTH_PATTERN = re.compile(r"^\d{4}-(?P<month>\d{2})$")
YEAR_PATTERN = re.compile(r"^\d{4}$")
REQUIRED_TOGETHER = {
    "agencies_near": ("lat", "lon", "km"),
    "joined_between": ("start", "end"),
}
QUERY_PATH = re.compile(r"^/" + DATABASE + r"/(?P<query>[A-Za-z0-9_]+)(?:\.(?P<format>\w+))?$")


def check_state(value: str) -> str | None:
    if value.upper() not in STATE_CODES:
        return f"state={value!r} is not a USPS state code; use a code such as OR or TX"
    return None


def check_date(name: str, value: str) -> str | None:
    if DATE_PATTERN.match(value):
        try:
            dt.date.fromisoformat(value)
            return None
        except ValueError:
            pass
    return f"{name}={value!r} is not a valid date; use YYYY-MM-DD, for example 2020-01-31"


def check_partial_date(name: str, value: str) -> str | None:
    """Check a date that may be given to the day, the month or the year."""
    if YEAR_PATTERN.match(value):
        return None
    month = MONTH_PATTERN.match(value)
    if month and 1 <= int(month.group("month")) <= 12:
        return None
    if month is None and check_date(name, value) is None:
        return None
    return (
        f"{name}={value!r} is not a valid date; use YYYY-MM-DD, YYYY-MM or YYYY, "
        "for example 2020-01-31, 2020-01 or 2020"
    )


def check_number(name: str, value: str, low: float, high: float,
                 low_inclusive: bool = True) -> str | None:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    too_low = number < low if low_inclusive else number <= low
    if math.isnan(number) or too_low or number > high:
        bound = "from" if low_inclusive else "greater than"
        return f"{name}={value!r} is invalid; use a number {bound} {low:g} up to {high:g}"
    return None


def check_agency_type(value: str) -> str | None:
    if value.lower() not in AGENCY_TYPES:
        return f"agency_type={value!r} is invalid; use one of {', '.join(AGENCY_TYPES)}"
    return None


def check_text(name: str, value: str) -> str | None:
    if len(value) > MAX_TEXT_LENGTH:
        return f"{name} is {len(value)} characters long; use at most {MAX_TEXT_LENGTH}"
    return None


def parameter_error(name: str, value: str) -> str | None:
    """Return why the value is invalid for the named parameter, or None when it is valid."""
    if value.strip() == "":
        return None
    if name == "state":
        return check_state(value)
    if name in ("start", "end"):
        return check_partial_date(name, value)
    if name == "since":
        return check_date(name, value)
    if name == "lat":
        return check_number(name, value, -90, 90)
    if name == "lon":
        return check_number(name, value, -180, 180)
    if name == "km":
        return check_number(name, value, 0, MAX_RADIUS_KM, low_inclusive=False)
    if name == "agency_type":
        return check_agency_type(value)
    if name in ("q", "county"):
        return check_text(name, value)
    return None


def missing_parameters_error(query: str, values: dict[str, str]) -> str | None:
    """Return an error when a request gives some, but not all, of a query's required group."""
    group = REQUIRED_TOGETHER.get(query)
    if group is None:
        return None
    missing = [name for name in group if not values.get(name, "").strip()]
    if not missing or len(missing) == len(group):
        return None
    verb = "is" if len(missing) == 1 else "are"
    return (
        f"{query} needs {', '.join(group[:-1])} and {group[-1]} together, "
        f"but {' and '.join(missing)} {verb} missing. Give a value for each, "
        "or none of them to see the empty form"
    )


def query_errors(query: str, query_string: str) -> list[str]:
    errors = []
    values = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        values.setdefault(name, value)
        error = parameter_error(name, value)
        if error:
            errors.append(error)
    missing = missing_parameters_error(query, values)
    if missing:
        errors.append(missing)
    if not errors:
        order = date_order_error(values.get("start", "").strip(), values.get("end", "").strip())
        if order:
            errors.append(order)
    return errors


def date_order_error(start: str, end: str) -> str | None:
    """Reject a start after the end; dates of different precision compare by their common part."""
    if not start or not end:
        return None
    common = min(len(start), len(end))
    if start[:common] > end[:common]:
        return f"start={start!r} is after end={end!r}; give the earlier date as start"
    return None


async def error_response(datasette, scope, receive, errors: list[str], output_format):
    message = "Invalid query parameters: " + "; ".join(errors)
    if output_format == "json":
        return Response.json({"ok": False, "error": message, "status": 400}, status=400)
    if output_format not in (None, "html"):
        return Response.text(message, status=400)
    html = await datasette.render_template(
        "error.html",
        {"ok": False, "error": message, "status": 400, "title": "Invalid query parameters"},
        # This wrapper runs outside Datasette's CSRF middleware, which is what
        # normally puts csrftoken in the scope that base.html reads.
        request=Request(dict(scope, csrftoken=lambda: ""), receive),
    )
    return Response.html(html, status=400)


@hookimpl
def asgi_wrapper(datasette):
    def wrap(app):
        async def check_parameters(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            match = QUERY_PATH.match(scope.get("path", ""))
            queries = datasette.metadata("queries", database=DATABASE) or {}
            if not match or match.group("query") not in queries:
                return await app(scope, receive, send)
            errors = query_errors(
                match.group("query"),
                scope.get("query_string", b"").decode("utf-8", "replace"),
            )
            if not errors:
                return await app(scope, receive, send)
            log.info("Rejected %s: %s", scope["path"], "; ".join(errors))
            response = await error_response(
                datasette, scope, receive, errors, match.group("format")
            )
            await response.asgi_send(send)

        return check_parameters

    return wrap

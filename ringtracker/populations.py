"""State populations, from an optional data file, for the "agencies per million residents" map.

The file is `data/state-populations.csv` with the columns below, one row per
state, each row citing the public page its figure comes from. The project
ships no such file until someone adds figures from a named source (such as
the Census Bureau's resident population tables), because the dataset
publishes no number without a citation. Without the file the site offers the
other map measures only.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import urlsplit

import us

POPULATIONS_PATH = "data/state-populations.csv"
COLUMNS = ("state", "population", "as_of", "source_url")
STATE_CODES = {state.abbr for state in us.states.STATES_AND_TERRITORIES} | {us.states.DC.abbr}


class PopulationError(ValueError):
    """The state populations file cannot be read, or has a row that cannot be published."""


def read_populations(content: bytes) -> list[dict]:
    """Parse and check the populations CSV, and return one dict per state, sorted by state."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PopulationError(f"{POPULATIONS_PATH} is not UTF-8 ({error}); save it as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise PopulationError(
            f"{POPULATIONS_PATH} lacks the columns {', '.join(missing)}; "
            f"its header must be {','.join(COLUMNS)}"
        )
    rows: dict[str, dict] = {}
    for line_number, raw in enumerate(reader, start=2):
        row = check_row({key: (value or "").strip() for key, value in raw.items() if key}, line_number)
        if row["state"] in rows:
            raise PopulationError(
                f"{POPULATIONS_PATH} line {line_number}: {row['state']} appears twice; keep one row per state"
            )
        rows[row["state"]] = row
    return [rows[state] for state in sorted(rows)]


def check_row(row: dict, line_number: int) -> dict:
    where = f"{POPULATIONS_PATH} line {line_number}"
    state = row["state"].upper()
    if state not in STATE_CODES:
        raise PopulationError(f"{where}: state {row['state']!r} is not a USPS state code; use a code such as OR")
    try:
        population = int(row["population"].replace(",", ""))
    except ValueError:
        population = 0
    if population <= 0:
        raise PopulationError(
            f"{where}: population {row['population']!r} is not a positive whole number; "
            "give the number of residents, such as 3271616"
        )
    if not row["as_of"]:
        raise PopulationError(f"{where}: as_of is empty; give the date or year the figure refers to")
    url = urlsplit(row["source_url"])
    if url.scheme not in ("http", "https") or not url.netloc:
        raise PopulationError(
            f"{where}: source_url {row['source_url']!r} is not a web address; "
            "cite the public page the figure comes from"
        )
    return {"state": state, "population": population, "as_of": row["as_of"],
            "source_url": row["source_url"]}

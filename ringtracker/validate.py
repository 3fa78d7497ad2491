"""The validation gate: checks a new snapshot must pass before anything is written.

A scheduled scraper that commits whatever it fetched ends up committing empty or partial
files when the source breaks. validate() raises ValidationError instead, so the caller
leaves the existing data file untouched and exits non-zero.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable

from ringtracker.errors import ValidationError
from ringtracker.normalize import Problem

log = logging.getLogger(__name__)

MAX_FAILING_ROW_SHARE = 0.01
MAX_SHRINK_SHARE = 0.20
REQUIRED_FIELDS = ("id", "name", "state")
MAX_LISTED = 20


def validate(
    new_records: list[dict],
    old_records: list[dict] | None,
    allow_shrink: bool = False,
    problems: Iterable[Problem] = (),
) -> list[dict]:
    """Return the records to write, or raise ValidationError naming the failed check.

    ``problems`` are the normalize problems; rows they dropped count as failing rows.
    Failing rows (no id, name or state) are dropped with a warning while they are at most
    1 % of all rows. Above that share the snapshot is rejected. The snapshot is also rejected
    when it has no rows, has duplicate ids, or has more than 20 % fewer records than
    ``old_records`` (unless ``allow_shrink``). Problems that do not drop a row are logged
    as warnings only.
    """
    problems = list(problems)
    kept, failing = _split_incomplete(new_records)
    failing.extend(str(problem) for problem in problems if problem.drops_row)
    failing_rows = len({problem.row for problem in problems if problem.drops_row}) + (len(new_records) - len(kept))
    total_rows = len(new_records) + len({problem.row for problem in problems if problem.drops_row})

    if total_rows == 0:
        raise ValidationError(
            "The document contains no placemarks, so the existing data file is kept. Check that --url points at the agency map."
        )
    _check_failing_rows(failing_rows, total_rows, failing)
    _check_duplicates(kept)
    _check_shrink(len(kept), old_records, allow_shrink)

    for problem in problems:
        if not problem.drops_row:
            log.warning("Kept row with an invalid value set to null: %s", problem)
    return kept


def _split_incomplete(records: list[dict]) -> tuple[list[dict], list[str]]:
    kept, failing = [], []
    for index, record in enumerate(records, start=1):
        missing = [name for name in REQUIRED_FIELDS if not record.get(name)]
        if missing:
            failing.append(f"record {index} ({record.get('name')!r}, id {record.get('id')!r}): missing {', '.join(missing)}")
        else:
            kept.append(record)
    return kept, failing


def _check_failing_rows(failing_rows: int, total_rows: int, failing: list[str]) -> None:
    if failing_rows == 0:
        return
    share = failing_rows / total_rows
    if share > MAX_FAILING_ROW_SHARE:
        raise ValidationError(
            f"{failing_rows} of {total_rows} rows ({share:.1%}) have no usable id, name or state, more than "
            f"the {MAX_FAILING_ROW_SHARE:.0%} allowed; the map format may have changed. Failing rows:",
            _capped(failing),
        )
    for line in failing:
        log.warning("Dropped row: %s", line)
    log.warning("Dropped %d of %d rows (%.1f%%), within the %.0f%% allowed", failing_rows, total_rows, share * 100, MAX_FAILING_ROW_SHARE * 100)


def _check_duplicates(records: list[dict]) -> None:
    by_id = defaultdict(list)
    for record in records:
        by_id[record["id"]].append(record)
    duplicates = {agency_id: rows for agency_id, rows in by_id.items() if len(rows) > 1}
    if not duplicates:
        return
    details = []
    for agency_id, rows in sorted(duplicates.items()):
        listed = "; ".join(f"{row['name']!r} at {row.get('address')!r}" for row in rows)
        details.append(f"id {agency_id!r}: {listed}")
    raise ValidationError(
        f"{len(duplicates)} id(s) are used by more than one row; each agency needs a unique id. Duplicates:",
        _capped(details),
    )


def _check_shrink(new_count: int, old_records: list[dict] | None, allow_shrink: bool) -> None:
    if not old_records:
        return
    old_count = len(old_records)
    drop = (old_count - new_count) / old_count
    if drop <= MAX_SHRINK_SHARE:
        return
    message = (
        f"The snapshot has {new_count:,} agencies, {drop:.0%} fewer than the {old_count:,} in the existing "
        f"data file (more than the {MAX_SHRINK_SHARE:.0%} allowed)."
    )
    if allow_shrink:
        log.warning("%s Accepted because of --allow-shrink.", message)
        return
    raise ValidationError(message + " If the map really shrank, run again with --allow-shrink.")


def _capped(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LISTED:
        return lines
    return lines[:MAX_LISTED] + [f"... and {len(lines) - MAX_LISTED} more"]

import logging

import pytest

from ringtracker.errors import ScrapeError, ValidationError
from ringtracker.kml import parse
from ringtracker.normalize import Problem, normalize
from ringtracker.validate import validate
from tests.helpers_scrape import make_kml, numbered_agencies, read_capture


def records_for(count, start=1):
    return normalize(parse(make_kml(numbered_agencies(count, start)))).records


def dropped(row, name="Broken Police Department"):
    return Problem(row=row, name=name, field="address", value="Broken, Nowhere", message="cannot resolve a US state", drops_row=True)


def test_validate_returns_records_when_clean():
    records = records_for(3)

    assert validate(records, None) == records


def test_validation_error_is_scrape_error():
    assert issubclass(ValidationError, ScrapeError)


def test_zero_placemarks_rejected():
    with pytest.raises(ValidationError, match="no placemarks"):
        validate([], None)


def test_zero_placemarks_rejected_even_with_old_snapshot():
    with pytest.raises(ValidationError, match="no placemarks"):
        validate([], records_for(5), allow_shrink=True)


def test_failing_rows_within_one_percent_dropped(caplog):
    records = records_for(150)

    with caplog.at_level(logging.WARNING, logger="ringtracker.validate"):
        kept = validate(records, None, problems=[dropped(151)])

    assert kept == records
    assert "Dropped row: row 151 (Broken Police Department): cannot resolve a US state" in caplog.text
    assert "Dropped 1 of 151 rows" in caplog.text


def test_failing_rows_over_one_percent_rejected():
    records = records_for(50)

    with pytest.raises(ValidationError) as caught:
        validate(records, None, problems=[dropped(51)])

    message = str(caught.value)
    assert "1 of 51 rows (2.0%) have no usable id, name or state" in message
    assert "row 51 (Broken Police Department): cannot resolve a US state: address = 'Broken, Nowhere'" in message


def test_all_rows_failing_rejected():
    with pytest.raises(ValidationError, match="2 of 2 rows"):
        validate([], None, problems=[dropped(1), dropped(2)])


def test_records_missing_required_fields_count_as_failing():
    records = records_for(3)
    records[1] = dict(records[1], state=None)

    with pytest.raises(ValidationError) as caught:
        validate(records, None)

    assert "1 of 3 rows" in str(caught.value)
    assert "record 2 ('Testville 2 Police Department', id 'testville-2-police-department-oh'): missing state" in str(caught.value)


def test_problems_that_keep_the_row_only_warn(caplog):
    records = records_for(2)
    kept_problem = Problem(row=1, name="Testville 1 Police Department", field="Active Date", value="2/30/2020", message="invalid date", drops_row=False)

    with caplog.at_level(logging.WARNING, logger="ringtracker.validate"):
        kept = validate(records, None, problems=[kept_problem])

    assert kept == records
    assert "invalid date: Active Date = '2/30/2020'" in caplog.text


def test_duplicate_ids_rejected_naming_both_rows():
    result = normalize(parse(read_capture("duplicate-ids.kml")))

    with pytest.raises(ValidationError) as caught:
        validate(result.records, None)

    message = str(caught.value)
    assert "1 id(s) are used by more than one row" in message
    assert (
        "id 'washington-township-police-department-oh': "
        "'Washington Township Police Department' at 'Washington Township, Franklin County, OH'; "
        "'Washington Township Police Department' at 'Washington Township, Montgomery County, OH'"
    ) in message


def test_shrink_over_twenty_percent_rejected():
    with pytest.raises(ValidationError) as caught:
        validate(records_for(7), records_for(10))

    message = str(caught.value)
    assert "7 agencies, 30% fewer than the 10 in the existing data file" in message
    assert "--allow-shrink" in message


def test_shrink_of_twenty_percent_accepted():
    assert len(validate(records_for(8), records_for(10))) == 8


def test_allow_shrink_accepts_large_drop(caplog):
    with caplog.at_level(logging.WARNING, logger="ringtracker.validate"):
        kept = validate(records_for(5), records_for(10), allow_shrink=True)

    assert len(kept) == 5
    assert "Accepted because of --allow-shrink" in caplog.text


def test_growth_accepted():
    assert len(validate(records_for(20), records_for(10))) == 20


def test_empty_old_snapshot_skips_shrink_check():
    assert len(validate(records_for(1), [])) == 1


def test_long_failure_lists_capped():
    problems = [dropped(row) for row in range(1, 31)]

    with pytest.raises(ValidationError) as caught:
        validate(records_for(10, start=100), None, problems=problems)

    assert caught.value.details[-1] == "... and 10 more"
    assert len(caught.value.details) == 21

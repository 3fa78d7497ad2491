"""Coverage-guided fuzz target for the KML/KMZ parser, normalize and the validation gate.

Run it through `make fuzz` (FUZZ_SECONDS sets the duration), or directly with libFuzzer
flags, for example:

    .venv/bin/python fuzz/fuzz_kml.py -max_total_time=60 /tmp/fuzz-work tests/corpus tests/captures

libFuzzer writes new inputs into the first directory, so pass a scratch directory first and
the committed corpora after it. Any exception outside the ScrapeError family is a crash;
libFuzzer saves the input that caused it (see -artifact_prefix).
"""

import logging
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["ringtracker", "defusedxml"]):
    from ringtracker.errors import ScrapeError
    from ringtracker.kml import parse_document
    from ringtracker.normalize import normalize
    from ringtracker.validate import validate
    from ringtracker.write import serialize

# The same two records the corpus uses as the previous snapshot, so the shrink check runs.
PREVIOUS = [{"id": "testville-police-department-oh"}, {"id": "sample-county-sheriffs-office-in"}]
# Large enough for real exports of a few thousand placemarks, small enough that one input
# cannot hold up the run; the scraper itself allows 200 MiB after unpacking.
MAX_INPUT_BYTES = 1024 * 1024


def test_one_input(data: bytes) -> None:
    """Feed one input through parse, normalize, validate and serialize; ScrapeError is an expected outcome."""
    try:
        document = parse_document(data)
        result = normalize(document.placemarks)
        records = validate(result.records, PREVIOUS, problems=result.problems)
        serialize(records)
    except ScrapeError:
        pass


def main(argv: list[str]) -> None:
    # Validation warnings on every input would drown libFuzzer's status lines.
    logging.disable(logging.CRITICAL)
    atheris.Setup(argv + [f"-max_len={MAX_INPUT_BYTES}"], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)

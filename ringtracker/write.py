"""Read and write the tracked data file.

The file is a JSON list sorted by id with sorted keys and no fetch-time values, so an
unchanged map gives a byte-identical file and git records no commit.
"""

import json
import logging
import os
import tempfile
from pathlib import Path

from ringtracker.errors import ValidationError

log = logging.getLogger(__name__)

DEFAULT_FILE_MODE = 0o644


def serialize(records: list[dict]) -> bytes:
    """Return the exact bytes written for ``records``: UTF-8 JSON, 2-space indent, final newline."""
    ordered = sorted(records, key=lambda record: record["id"])
    text = json.dumps(ordered, indent=2, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def read_records(path: str | os.PathLike) -> list[dict] | None:
    """Return the records in an existing data file, or None when the file does not exist.

    Raises ValidationError when the file exists but is not a JSON list, because the
    shrink check cannot run against it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        records = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValidationError(
            f"The existing data file {path} is not valid JSON ({error}); restore it from git before scraping."
        ) from None
    if not isinstance(records, list):
        raise ValidationError(f"The existing data file {path} does not contain a JSON list; restore it from git.")
    return records


def write(records: list[dict], path: str | os.PathLike) -> bool:
    """Write ``records`` to ``path`` atomically; return False when the file already had these bytes.

    The data goes to a temporary file in the same directory, is flushed to disk, then
    replaces ``path`` with os.replace, so a reader never sees a partial file.
    """
    path = Path(path)
    data = serialize(records)
    try:
        if path.read_bytes() == data:
            log.info("%s is unchanged", path)
            return False
    except FileNotFoundError:
        pass
    write_atomic(data, path)
    log.info("Wrote %d records to %s", len(records), path)
    return True


def write_atomic(data: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = DEFAULT_FILE_MODE
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    log.debug("Wrote %d bytes to %s", len(data), path)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)

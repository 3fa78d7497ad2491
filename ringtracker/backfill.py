"""Import dated archived copies of the map into git history, one commit per changed capture.

Each capture goes through the scraper's own gate (``scrape.run`` reads a local path the
same way it reads the map URL), and the commit is made by ``scrape.commit_snapshot`` with
the capture date as author and committer date. The commits go on a new branch made from
the current HEAD in a temporary worktree, so the caller's checkout is never touched and
the branch can be reviewed before it is merged.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ringtracker import scrape
from ringtracker.errors import ScrapeError

log = logging.getLogger(__name__)

CAPTURE_SUFFIXES = (".kml", ".kmz")
# A capture whose name gives only a day is committed at 12:00 UTC, which is the same
# calendar day in every US time zone.
DATE_ONLY_TIME = "12:00:00"

# A 14-digit timestamp (YYYYMMDDhhmmss, as in Wayback Machine URLs), or a date written
# YYYY-MM-DD, YYYY_MM_DD or YYYYMMDD. The digits must not touch other digits, so a
# longer number in the name is not read as a date.
_CAPTURE_DATE = re.compile(
    r"(?<!\d)(?:"
    r"(?P<stamp>\d{14})"
    r"|(?P<year>\d{4})(?P<sep>[-_]?)(?P<month>\d{2})(?P=sep)(?P<day>\d{2})"
    r")(?!\d)"
)


class BackfillError(Exception):
    """The backfill cannot start; nothing was committed and no branch was created."""


@dataclass(frozen=True)
class Capture:
    path: Path
    captured_at: datetime  # UTC

    @property
    def git_date(self) -> str:
        return self.captured_at.isoformat()

    @property
    def fetched_at(self) -> str:
        return self.captured_at.isoformat().replace("+00:00", "Z")


@dataclass
class BackfillResult:
    branch: str
    committed: list[tuple[Capture, str]] = field(default_factory=list)
    unchanged: list[Capture] = field(default_factory=list)
    rejected: list[tuple[Capture, str]] = field(default_factory=list)


def capture_date(name: str) -> datetime | None:
    """Return the UTC capture time written in a file name, or None when it has no valid date.

    A name with two different dates is ambiguous and also returns None.
    """
    found = set()
    for match in _CAPTURE_DATE.finditer(name):
        parsed = _parse_match(match)
        if parsed is not None:
            found.add(parsed)
    if len(found) != 1:
        return None
    return found.pop()


def _parse_match(match: re.Match) -> datetime | None:
    try:
        if match["stamp"]:
            moment = datetime.strptime(match["stamp"], "%Y%m%d%H%M%S")
        else:
            text = f"{match['year']}-{match['month']}-{match['day']}T{DATE_ONLY_TIME}"
            moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc)


def find_captures(archive_dir: Path) -> list[Capture]:
    """List the KML/KMZ files in ``archive_dir``, oldest first (name breaks a tie).

    Raises BackfillError naming every capture file whose name has no valid date, so
    the caller can rename them before anything is committed.
    """
    if not archive_dir.is_dir():
        raise BackfillError(f"Archive directory {archive_dir} not found; pass a directory of .kml or .kmz files.")
    captures, undated = [], []
    for path in sorted(archive_dir.iterdir()):
        if not path.is_file() or path.suffix.lower() not in CAPTURE_SUFFIXES:
            log.info("Ignoring %s: not a .kml or .kmz file", path.name)
            continue
        moment = capture_date(path.name)
        if moment is None:
            undated.append(path.name)
        else:
            captures.append(Capture(path=path, captured_at=moment))
    if undated:
        raise BackfillError(
            f"No valid capture date in the name of {', '.join(undated)}. Rename each file with its "
            "capture date (2020-07-15.kml, ring-map-20200715.kmz or 20200715063012.kml), then run again."
        )
    if not captures:
        raise BackfillError(f"{archive_dir} contains no .kml or .kmz files.")
    return sorted(captures, key=lambda capture: (capture.captured_at, capture.path.name))


def backfill(
    repo: Path,
    archive_dir: Path,
    branch: str = "backfill",
    output: Path = scrape.DEFAULT_OUTPUT,
    source_url: str = scrape.DEFAULT_URL,
    allow_shrink: bool = False,
) -> BackfillResult:
    """Commit each capture in ``archive_dir`` on a new ``branch`` made from HEAD of ``repo``.

    ``output`` is the data file's path relative to the repository root. A capture that
    fails the scraper's gate is logged and rejected, and the others are kept. Raises
    BackfillError before creating the branch when the working tree is dirty, the branch
    exists, a capture name has no date, or a capture is older than the data file's newest
    commit. The build reads commits in history order, so older snapshots must come first.
    """
    root = _repository_root(repo)
    output = _relative_output(root, output)
    _check_clean(root)
    _check_new_branch(root, branch)
    captures = find_captures(archive_dir)
    _check_after_history(root, output, captures)

    result = BackfillResult(branch=branch)
    with _worktree(root, branch) as worktree:
        for capture in captures:
            _import_capture(worktree, output, capture, source_url, allow_shrink, result)
    if not result.committed:
        # An empty branch would only block the next run with "branch exists".
        _git(root, "branch", "--quiet", "-D", branch)
        log.info("No capture changed the data file; branch %s was deleted", branch)
    _log_summary(result)
    return result


def _import_capture(
    worktree: Path, output: Path, capture: Capture, source_url: str, allow_shrink: bool, result: BackfillResult
) -> None:
    data_file = worktree / output
    try:
        outcome = scrape.run(scrape.ScrapeConfig(url=str(capture.path), output=data_file, allow_shrink=allow_shrink))
        # commit_snapshot puts the URL in the Source-URL trailer, so it names the map the
        # capture was taken from, not the local file.
        commit_config = scrape.ScrapeConfig(url=source_url, output=data_file)
        with _commit_dates(capture.git_date):
            commit = scrape.commit_snapshot(commit_config, outcome.records, capture.fetched_at)
    except ScrapeError as error:
        log.error("Rejected capture %s: %s", capture.path.name, error)
        result.rejected.append((capture, str(error)))
        return
    if commit is None:
        log.info("Capture %s matches the previous snapshot; no commit", capture.path.name)
        result.unchanged.append(capture)
    else:
        log.info("Committed capture %s as %s dated %s", capture.path.name, commit[:12], capture.git_date)
        result.committed.append((capture, commit))


@contextmanager
def _commit_dates(date: str) -> Iterator[None]:
    # commit_snapshot runs git in a subprocess that inherits this environment, and git
    # takes both dates from these two variables.
    names = ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: date for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _worktree(root: Path, branch: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ring-backfill-") as scratch:
        path = Path(scratch) / "worktree"
        _git(root, "worktree", "add", "--quiet", "-b", branch, str(path), "HEAD")
        try:
            yield path
        finally:
            _git(root, "worktree", "remove", "--force", str(path))


def _log_summary(result: BackfillResult) -> None:
    log.info(
        "Backfill on branch %s: %d committed, %d unchanged, %d rejected",
        result.branch,
        len(result.committed),
        len(result.unchanged),
        len(result.rejected),
    )
    for capture, commit in result.committed:
        log.info("  committed %s  %s  %s", commit[:12], capture.git_date, capture.path.name)
    for capture in result.unchanged:
        log.info("  unchanged %s", capture.path.name)
    for capture, reason in result.rejected:
        log.warning("  rejected  %s: %s", capture.path.name, reason.splitlines()[0])
    if result.committed:
        log.info("Review the branch with `git log %s`, then merge it with `git merge %s`.", result.branch, result.branch)


def _repository_root(repo: Path) -> Path:
    try:
        return Path(_git(repo, "rev-parse", "--show-toplevel").strip())
    except BackfillError:
        raise BackfillError(f"{repo} is not a git repository; run backfill inside the project's clone.") from None


def _relative_output(root: Path, output: Path) -> Path:
    if not output.is_absolute():
        return output
    try:
        return output.resolve().relative_to(root.resolve())
    except ValueError:
        raise BackfillError(f"Output file {output} is outside the repository {root}; pass a path inside it.") from None


def _check_clean(root: Path) -> None:
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    if status.strip():
        raise BackfillError(
            f"The working tree of {root} has uncommitted changes:\n{status.rstrip()}\n"
            "Commit or discard them, then run backfill again."
        )


def _check_new_branch(root: Path, branch: str) -> None:
    exists = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        capture_output=True,
    )
    if exists.returncode == 0:
        raise BackfillError(f"Branch {branch!r} already exists; delete it or pass another name with --branch.")
    valid = subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True)
    if valid.returncode != 0:
        raise BackfillError(f"{branch!r} is not a valid branch name; pass another with --branch.")


def _check_after_history(root: Path, output: Path, captures: list[Capture]) -> None:
    # NOTE: placing older captures before existing commits would need a history rewrite
    # (and a full rebuild of ring.db), which backfill does not attempt.
    last = _git(root, "log", "-1", "--format=%ct", "HEAD", "--", output.as_posix()).strip()
    if not last:
        return
    last_commit = datetime.fromtimestamp(int(last), tz=timezone.utc)
    older = [capture.path.name for capture in captures if capture.captured_at <= last_commit]
    if older:
        raise BackfillError(
            f"{', '.join(older)} predate the newest commit of {output} ({last_commit.isoformat()}). "
            "The database is built in history order, so a backfill can only add captures newer than "
            "the file's history. Run the backfill before the scheduled scrape first commits the file."
        )


def _git(cwd: Path, *args: str) -> str:
    completed = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    if completed.returncode != 0:
        raise BackfillError(f"git {' '.join(args[:2])} failed in {cwd}: {completed.stderr.strip()}")
    return completed.stdout

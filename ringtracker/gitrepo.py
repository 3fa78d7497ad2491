"""Read a data file's history straight from git, without a working-tree checkout."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


class GitError(Exception):
    """A git command failed or the repository cannot be used for a build."""


@dataclass(frozen=True)
class Commit:
    hash: str
    date: str  # committer date, UTC ISO 8601
    message: str


def run_git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise GitError(
            f"git {' '.join(args)} failed in {repo}: {result.stderr.strip()}"
        )
    return result.stdout


def repository_root(path: Path) -> Path:
    return Path(run_git(path, "rev-parse", "--show-toplevel").strip())


def current_branch(repo: Path) -> str:
    branch = run_git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip()
    if branch == "HEAD":
        raise GitError(
            f"{repo} has a detached HEAD; check out a branch or pass --branch"
        )
    return branch


def is_shallow(repo: Path) -> bool:
    return run_git(repo, "rev-parse", "--is-shallow-repository").strip() == "true"


def utc_iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


def file_commits(repo: Path, ref: str, path: str) -> list[Commit]:
    """List the commits on `ref` that touch `path`, oldest first.

    This is the commit list git-history walks (`git rev-list REF -- PATH`,
    reversed), so the derived tables and git-history see the same versions.
    """
    output = run_git(
        repo, "log", "--reverse", "--format=%H%x00%ct%x00%B%x1e", ref, "--", path
    )
    commits = []
    for entry in output.split("\x1e"):
        entry = entry.strip("\n")
        if not entry:
            continue
        commit_hash, timestamp, message = entry.split("\x00", 2)
        commits.append(Commit(commit_hash, utc_iso(int(timestamp)), message))
    return commits


def read_versions(
    repo: Path, commits: list[Commit], path: str
) -> Iterator[tuple[Commit, bytes | None]]:
    """Yield each commit with the content of `path` in it (None where it is absent).

    One `git cat-file --batch` process serves every version, which is far
    cheaper than a `git show` per commit on long histories.
    """
    if not commits:
        return
    process = subprocess.Popen(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        for commit in commits:
            process.stdin.write(f"{commit.hash}:{path}\n".encode())
            process.stdin.flush()
            header = process.stdout.readline().decode().split()
            if len(header) == 2 and header[1] == "missing":
                yield commit, None
                continue
            size = int(header[2])
            content = process.stdout.read(size)
            process.stdout.read(1)  # the newline after each object
            yield commit, content
    finally:
        process.stdin.close()
        process.wait()


def commit_trailer(message: str, key: str) -> str | None:
    """Return the value of a `Key: value` trailer line in a commit message."""
    prefix = f"{key.lower()}:"
    for line in reversed(message.splitlines()):
        if line.lower().startswith(prefix):
            return line[len(prefix):].strip() or None
    return None

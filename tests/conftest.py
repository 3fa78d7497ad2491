"""Fixtures shared by the test modules: throwaway git repositories."""

import os
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def git_identity(monkeypatch):
    # CI machines have no global git identity; every test commit uses this one.
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test Runner")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test-runner@example.invalid")


class GitRepo:
    """A git repository in a temporary directory, with commits at chosen dates."""

    def __init__(self, path: Path, branch: str = "main"):
        self.path = path
        self.git("init", "--quiet", f"--initial-branch={branch}")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.path), *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def commit_file(self, relative: str, content: str | bytes, date: str, message: str = "") -> str:
        """Write a file and commit it with `date` as author and committer date; return the hash."""
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode("utf-8")
        target.write_bytes(content)
        self.git("add", relative)
        env = dict(os.environ, GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
        subprocess.run(
            ["git", "-C", str(self.path), "commit", "--quiet", "--allow-empty",
             "-m", message or f"Update {relative}"],
            check=True,
            env=env,
        )
        return self.git("rev-parse", "HEAD").strip()


@pytest.fixture
def make_repo(tmp_path):
    def factory(name: str = "repo", branch: str = "main") -> GitRepo:
        path = tmp_path / name
        path.mkdir()
        return GitRepo(path, branch)

    return factory

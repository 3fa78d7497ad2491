#!/usr/bin/env python3
"""Build ring.db from the git history of the data files in this repository."""

import logging
import sys
from pathlib import Path

import click

from ringtracker.build import BuildError, build
from ringtracker.gitrepo import GitError


@click.command()
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path(__file__).resolve().parent,
    show_default="this repository",
    help="Git repository whose data files' history is read.",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("ring.db"),
    show_default=True,
    help="SQLite database to create or update.",
)
@click.option(
    "--branch",
    help="Branch whose history is read. Default: the branch checked out in --repo.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Rebuild from the first commit instead of resuming from the existing database.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="How much progress to log on standard error.",
)
def main(repo, db_path, branch, full, log_level):
    """Build the versioned database (agencies, events, snapshots) with git-history."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        build(repo, db_path, branch=branch, full=full)
    except (BuildError, GitError) as error:
        raise click.ClickException(str(error)) from None


if __name__ == "__main__":
    sys.exit(main())

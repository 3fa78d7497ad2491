"""Command line: ``python -m ringtracker scrape``."""

import logging
from pathlib import Path

import click

from ringtracker import backfill, fetch, profiles, scrape
from ringtracker.errors import ScrapeError

log = logging.getLogger(__name__)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@click.group()
def cli():
    """Ring Partnership Tracker: scrape Ring's Active Agency Map into a git-tracked JSON file."""


log_level_option = click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Lowest level of log messages written to stderr.",
)


@cli.command(name="scrape")
@click.option(
    "--url",
    envvar="RING_MAP_URL",
    default=scrape.DEFAULT_URL,
    show_default=True,
    help="Map export to read: a KML/KMZ URL, a My Maps NetworkLink wrapper (&nl=1), a file:// URL "
    "or a local path to an archived copy. Overrides the RING_MAP_URL environment variable.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=scrape.DEFAULT_OUTPUT,
    show_default=True,
    help="JSON data file to write; it is also the previous snapshot for the shrink check.",
)
@click.option(
    "--allow-shrink",
    is_flag=True,
    help="Accept a snapshot with more than 20% fewer agencies than the existing data file.",
)
@click.option(
    "--commit",
    is_flag=True,
    help="Commit the data file in its git repository when it changed, with a summary of "
    "added, removed and changed agencies. Uses the repository's configured git identity.",
)
@click.option(
    "--with-profiles",
    is_flag=True,
    help="Also fetch each agency's profile page for video-request and post counts, into a "
    "separate file; failures there are logged and never stop the scrape.",
)
@click.option(
    "--profiles-output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON file for --with-profiles results.  [default: profiles.json next to --output]",
)
@click.option(
    "--profile-delay",
    type=click.FloatRange(min=0),
    default=profiles.ProfileOptions.delay,
    show_default=True,
    help="Minimum pause between two profile page requests, in seconds.",
)
@click.option(
    "--profile-cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory that caches profile pages for 24 hours.  "
    "[default: $XDG_CACHE_HOME/ring-partnership-tracker/profiles]",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=fetch.DEFAULT_READ_TIMEOUT,
    show_default=True,
    help="Read timeout for each HTTP request, in seconds (the connect timeout is at most 10 s).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=fetch.DEFAULT_RETRIES,
    show_default=True,
    help="Retries after a connection error, timeout or HTTP 429/5xx response.",
)
@click.option(
    "--retry-backoff",
    type=click.FloatRange(min=0),
    default=fetch.DEFAULT_BACKOFF_FACTOR,
    show_default=True,
    help="Backoff factor in seconds: the first retry is immediate and retry n waits factor * 2^(n-1), "
    "at most 120 s. A Retry-After header on 429 or 503 sets the wait instead, also at most 120 s.",
)
@log_level_option
def scrape_command(
    url,
    output,
    allow_shrink,
    commit,
    with_profiles,
    profiles_output,
    profile_delay,
    profile_cache,
    timeout,
    retries,
    retry_backoff,
    log_level,
):
    """Fetch the map, validate it and write the data file; exit non-zero and keep the old file on any failure."""
    _configure_logging(log_level)
    fetch_options = fetch.FetchOptions(
        connect_timeout=min(fetch.DEFAULT_CONNECT_TIMEOUT, timeout),
        read_timeout=timeout,
        retries=retries,
        backoff_factor=retry_backoff,
    )
    profile_options = profiles.ProfileOptions(
        delay=profile_delay,
        cache_dir=profile_cache or profiles.default_cache_dir(),
        fetch_options=fetch.FetchOptions(
            connect_timeout=fetch_options.connect_timeout,
            read_timeout=min(timeout, profiles.PROFILE_READ_TIMEOUT),
            retries=retries,
            backoff_factor=retry_backoff,
            max_bytes=profiles.PROFILE_MAX_BYTES,
        ),
    )
    config = scrape.ScrapeConfig(
        url=url,
        output=output,
        allow_shrink=allow_shrink,
        commit=commit,
        with_profiles=with_profiles,
        profiles_output=profiles_output,
        fetch_options=fetch_options,
        profile_options=profile_options,
    )
    try:
        scrape.run(config)
    except ScrapeError as error:
        log.error("Scrape failed, %s left unchanged: %s", output, error)
        raise click.exceptions.Exit(1) from None


@cli.command(name="backfill")
@click.argument("archive_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--branch",
    default="backfill",
    show_default=True,
    help="New branch for the commits, made from the current HEAD; it must not exist yet.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=scrape.DEFAULT_OUTPUT,
    show_default=True,
    help="Data file to write, relative to the repository root.",
)
@click.option(
    "--source-url",
    default=scrape.DEFAULT_URL,
    show_default=True,
    help="Map URL the captures were taken from, written in each commit's Source-URL trailer.",
)
@click.option(
    "--allow-shrink",
    is_flag=True,
    help="Accept a capture with more than 20% fewer agencies than the previous one.",
)
@log_level_option
def backfill_command(archive_dir, branch, output, source_url, allow_shrink, log_level):
    """Commit dated archived copies of the map (.kml/.kmz in ARCHIVE_DIR) with their capture dates.

    The capture date comes from the file name: 2020-07-15.kml, 2020_07_15.kml,
    ring-map-20200715.kmz, or a Wayback timestamp such as 20200715063012.kml. Each capture
    passes the scraper's validation gate; a rejected capture is logged and skipped, and
    the command then exits with status 1 after keeping the others.
    """
    _configure_logging(log_level)
    try:
        result = backfill.backfill(
            Path.cwd(),
            archive_dir,
            branch=branch,
            output=output,
            source_url=source_url,
            allow_shrink=allow_shrink,
        )
    except (backfill.BackfillError, ScrapeError) as error:
        log.error("Backfill failed, nothing committed: %s", error)
        raise click.exceptions.Exit(1) from None
    if result.rejected:
        raise click.exceptions.Exit(1)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level.upper() != "DEBUG":
        logging.getLogger("urllib3").setLevel(logging.WARNING)

"""Rehearse a Cloud Run deploy locally, and tell whether the live site needs one.

``dry-run`` takes the flags of ``datasette publish cloudrun`` (the Makefile passes the
same PUBLISH_FLAGS to both) and builds the directory that command uploads, with
datasette's own ``temporary_docker_directory``: Dockerfile, metadata.json, templates/,
plugins/, static mounts and the database. It then runs the Dockerfile's build and start
steps without docker: the package pins are checked against this environment instead of
installed, ``datasette inspect`` writes inspect-data.json, and the CMD runs with this
environment's datasette on 127.0.0.1.

``changed`` compares the database's content hash with the one the live site reports at
``/-/databases.json``, so the deploy workflow publishes only when the data changed.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path

import click
import requests
from datasette.publish.common import add_common_publish_arguments_and_options
from datasette.utils import temporary_docker_directory

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_DIR = Path("build/publish")
LOCAL_HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 30.0
# `datasette publish cloudrun` adds this setting unless the flags already set it.
FORCE_HTTPS_SETTING = "--setting force_https_urls on"


class PublishError(Exception):
    """The deploy artefact cannot be built or served as Cloud Run would run it."""


@dataclass
class Dockerfile:
    """The steps of a generated Dockerfile that matter for a local run."""

    env: dict[str, str] = field(default_factory=dict)
    run: list[str] = field(default_factory=list)
    cmd: str = ""


def datasette_executable() -> str:
    return str(Path(sys.executable).parent / "datasette")


def cloudrun_extra_options(extra_options: str | None) -> str:
    """Return ``--extra-options`` as ``datasette publish cloudrun`` passes it to the Dockerfile."""
    extra_options = extra_options or ""
    if "force_https_urls" in extra_options:
        return extra_options
    return f"{extra_options} {FORCE_HTTPS_SETTING}".strip()


def plugin_secret_settings(plugin_secret) -> tuple[dict, dict]:
    """Return the metadata entries and environment variables cloudrun makes for --plugin-secret."""
    plugins: dict[str, dict] = {}
    environment: dict[str, str] = {}
    for plugin_name, setting, value in plugin_secret:
        variable = f"{plugin_name}_{setting}".upper().replace("-", "_")
        environment[variable] = value
        plugins.setdefault(plugin_name, {})[setting] = {"$env": variable}
    return plugins, environment


def build_artefact(output_dir: Path, docker_args: dict) -> Path:
    """Write the cloudrun deploy directory to ``output_dir`` and return the path of its Dockerfile.

    ``docker_args`` are the keyword arguments of ``temporary_docker_directory``.
    """
    output_dir = output_dir.resolve()
    _clear_previous_artefact(output_dir)
    with temporary_docker_directory(**docker_args) as docker_dir:
        shutil.copytree(docker_dir, output_dir)
    log.info("Wrote the deploy artefact to %s", output_dir)
    return output_dir / "Dockerfile"


def _clear_previous_artefact(output_dir: Path) -> None:
    if not output_dir.exists():
        return
    # Only a directory that a previous dry run wrote is deleted, never an arbitrary one.
    if not (output_dir / "Dockerfile").is_file():
        raise PublishError(
            f"{output_dir} exists and contains no Dockerfile from an earlier dry run; "
            "pass an empty or new directory with --output-dir."
        )
    shutil.rmtree(output_dir)


def parse_dockerfile(text: str) -> Dockerfile:
    """Read the ENV, RUN and CMD lines of a Dockerfile that ``make_dockerfile`` wrote."""
    parsed = Dockerfile()
    for line in text.splitlines():
        instruction, _, argument = line.strip().partition(" ")
        if instruction == "ENV":
            key, _, value = argument.partition(" ")
            parsed.env[key] = " ".join(shlex.split(value))
        elif instruction == "RUN":
            parsed.run.append(argument)
        elif instruction == "CMD":
            parsed.cmd = argument
    if not parsed.cmd:
        raise PublishError("The generated Dockerfile has no CMD line; the datasette version may have changed its format.")
    return parsed


def check_install_pins(requirements: list[str]) -> None:
    """Check that each ``name==version`` in the Dockerfile's pip line is the version installed here.

    The local run then serves with the same packages the image installs. Raises
    PublishError naming every missing or different package.
    """
    problems = []
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        try:
            installed = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            problems.append(f"{requirement} is not installed here")
            continue
        if version and installed != version:
            problems.append(f"{requirement} is pinned, but {name} {installed} is installed here")
    if problems:
        raise PublishError(
            "The image would install other packages than this environment has: "
            + "; ".join(problems)
            + ". Make the --install pins match requirements.txt and run `make install`."
        )


def run_build_steps(artefact_dir: Path, dockerfile: Dockerfile) -> None:
    """Run the Dockerfile's RUN steps here: check the pip pins, run ``datasette inspect``."""
    for step in dockerfile.run:
        words = shlex.split(step)
        if words[:2] == ["pip", "install"]:
            check_install_pins([word for word in words[2:] if not word.startswith("-")])
        elif words[:2] == ["datasette", "inspect"]:
            _run([datasette_executable(), *words[1:]], artefact_dir)
        else:
            raise PublishError(f"The Dockerfile step RUN {step} has no local equivalent; update ringtracker.publish.")


def local_command(cmd: str, port: int) -> list[str]:
    """Turn the Dockerfile's CMD into a command for this machine: this datasette, 127.0.0.1, ``port``."""
    words = shlex.split(cmd.replace("$PORT", str(port)))
    if words[0] != "datasette":
        raise PublishError(f"The Dockerfile's CMD does not start datasette: {cmd}")
    words[0] = datasette_executable()
    host = words.index("--host")
    words[host + 1] = LOCAL_HOST
    return words


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCAL_HOST, 0))
        return sock.getsockname()[1]


def _run(command: list[str], cwd: Path) -> None:
    log.info("Running %s", shlex.join(command))
    completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if completed.returncode != 0:
        raise PublishError(f"{shlex.join(command)} failed in {cwd}: {(completed.stderr or completed.stdout).strip()}")


def content_hash(db_path: Path) -> str:
    """Return the database's content hash as ``datasette inspect`` computes it."""
    command = [datasette_executable(), "inspect", str(db_path), "--inspect-file", "-"]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise PublishError(f"datasette inspect failed on {db_path}: {completed.stderr.strip()}")
    return json.loads(completed.stdout)[db_path.stem]["hash"]


def live_hash(site_url: str, database: str, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """Return the hash the site at ``site_url`` reports for ``database``, or None when it cannot be read."""
    url = f"{site_url.rstrip('/')}/-/databases.json"
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        databases = response.json()
    except (requests.RequestException, ValueError) as error:
        log.warning("Cannot read %s: %s", url, error)
        return None
    for entry in databases if isinstance(databases, list) else []:
        if isinstance(entry, dict) and entry.get("name") == database:
            return entry.get("hash")
    log.warning("%s lists no database named %s", url, database)
    return None


def needs_deploy(db_path: Path, site_url: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Return True unless the live site serves a database with the same content hash.

    A missing URL or an unreadable site counts as changed, because a deploy that was not
    needed costs a few minutes while a skipped one leaves the site stale.
    """
    local = content_hash(db_path)
    if not site_url:
        log.warning("No site URL given; deploying without a comparison")
        return True
    live = live_hash(site_url, db_path.stem, timeout)
    log.info("%s: local hash %s, live hash %s", db_path, local, live)
    return live != local


@click.group()
def cli():
    """Rehearse the Cloud Run deploy locally and compare the database with the live site."""


@cli.command(name="dry-run")
@add_common_publish_arguments_and_options
@click.option("-n", "--name", default="datasette", show_default=True, help="Application name, as for cloudrun.")
@click.option(
    "--service",
    default="",
    help="Cloud Run service name. Accepted so the same flags work for cloudrun; the dry run does not use it.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUTPUT_DIR,
    show_default=True,
    help="Directory for the deploy artefact; an earlier artefact there is replaced.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port for the local server on 127.0.0.1; 0 picks a free port.",
)
@click.option("--serve/--no-serve", default=True, show_default=True, help="Start the server after building.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Lowest level of log messages written to stderr.",
)
def dry_run_command(files, metadata, extra_options, branch, template_dir, plugins_dir, static, install,
                    plugin_secret, version_note, secret, title, license, license_url, source, source_url,
                    about, about_url, name, service, output_dir, port, serve, log_level):
    """Build the artefact `datasette publish cloudrun` would upload, then serve it on 127.0.0.1."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not files:
        raise click.UsageError("Name at least one database file, as for datasette publish cloudrun.")
    if branch:
        raise click.UsageError("--branch installs datasette from GitHub, which a local run cannot reproduce.")
    plugins, environment = plugin_secret_settings(plugin_secret)
    extra_metadata = {
        "title": title, "license": license, "license_url": license_url, "source": source,
        "source_url": source_url, "about": about, "about_url": about_url,
        "plugins": plugins or None,
    }
    docker_args = dict(
        files=files, name=name, metadata=metadata, extra_options=cloudrun_extra_options(extra_options),
        branch=None, template_dir=template_dir, plugins_dir=plugins_dir, static=static, install=install,
        spatialite=False, version_note=version_note, secret=secret, extra_metadata=extra_metadata,
        environment_variables=environment,
    )
    try:
        dockerfile_path = build_artefact(output_dir, docker_args)
        dockerfile = parse_dockerfile(dockerfile_path.read_text())
        run_build_steps(dockerfile_path.parent, dockerfile)
        port = port or free_port()
        command = local_command(dockerfile.cmd, port)
    except PublishError as error:
        raise click.ClickException(str(error)) from None
    if not serve:
        return
    log.info("Serving %s: %s", dockerfile_path.parent, shlex.join(command))
    os.chdir(dockerfile_path.parent)
    # exec replaces this process, so stopping it stops the server with nothing left behind.
    os.execve(command[0], command, {**os.environ, **dockerfile.env, "PORT": str(port)})


@cli.command(name="changed")
@click.option(
    "--db",
    "db_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("ring.db"),
    show_default=True,
    help="Database to compare; its file name without .db is the database name on the site.",
)
@click.option(
    "--site-url",
    envvar="SITE_URL",
    default="",
    help="Base URL of the live site, e.g. https://ring.example.org. Empty means deploy. [env: SITE_URL]",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Timeout for the request to the live site, in seconds.",
)
def changed_command(db_path, site_url, timeout):
    """Write `true` when the database differs from the live site's copy or the site cannot be read, else `false`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = needs_deploy(db_path, site_url, timeout)
    except PublishError as error:
        raise click.ClickException(str(error)) from None
    click.echo("true" if result else "false")


if __name__ == "__main__":
    cli(prog_name="python -m ringtracker.publish")

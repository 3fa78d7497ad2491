"""The publish dry run: the deploy artefact from the Makefile's flags, served on 127.0.0.1."""

import json
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from werkzeug import Response

from ringtracker.publish import (
    PublishError,
    build_artefact,
    check_install_pins,
    content_hash,
    free_port,
    local_command,
    needs_deploy,
    parse_dockerfile,
)
from tests.helpers_scrape import clean_env, httpserver, loopback_server  # noqa: F401
from tests.site_db import build_site_db

ROOT = Path(__file__).resolve().parent.parent


def make_dry_run_command(db_path: Path, output_dir: Path, port: int) -> list[str]:
    """Return the command `make publish-dry-run` runs, without running its build prerequisite."""
    output = subprocess.run(
        ["make", "-n", "--no-print-directory", "publish-dry-run",
         f"DB={db_path}", f"PUBLISH_DIR={output_dir}", f"PORT={port}"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    lines = [line for line in output.splitlines() if "ringtracker.publish dry-run" in line]
    assert len(lines) == 1, output
    command = shlex.split(lines[0])
    command[0] = sys.executable
    return command


def wait_for(url: str, process: subprocess.Popen, timeout: float = 60.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the dry run exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"the dry run did not answer at {url} within {timeout} s")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """Run the Makefile's dry-run command on the site test database; yield (base URL, db, artefact dir)."""
    work = tmp_path_factory.mktemp("publish")
    db_path = build_site_db(work / "ring.db")
    output_dir = work / "artefact"
    port = free_port()
    log_path = work / "dry-run.log"
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            make_dry_run_command(db_path, output_dir, port),
            cwd=ROOT, env=clean_env(), stdout=log_file, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(base + "/-/versions.json", process)
            yield base, db_path, output_dir
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_dry_run_serves_agencies(dry_run):
    base, _, _ = dry_run

    with urllib.request.urlopen(base + "/ring/agencies.json?_shape=array&_size=max") as response:
        rows = json.loads(response.read())

    assert len(rows) == 9
    assert {row["name"] for row in rows} >= {"Riverbend Police Department", "Stillwater Crossing"}


def test_dry_run_artefact_contents(dry_run):
    _, _, output_dir = dry_run

    names = {path.name for path in output_dir.iterdir()}

    assert names == {"Dockerfile", "metadata.json", "templates", "plugins", "static", "ring.db", "inspect-data.json"}
    assert (output_dir / "static" / "states-10m.json").is_file()
    assert (output_dir / "plugins" / "chart_routes.py").is_file()
    assert json.loads((output_dir / "metadata.json").read_text())["databases"]["ring"]


def test_dry_run_dockerfile_pins(dry_run):
    _, _, output_dir = dry_run
    requirements = dict(
        line.split("==", 1) for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line
    )

    dockerfile = parse_dockerfile((output_dir / "Dockerfile").read_text())
    pip_line = next(step for step in dockerfile.run if step.startswith("pip install"))
    pinned = [word for word in shlex.split(pip_line) if "==" in word]

    assert pinned
    for requirement in pinned:
        name, version = requirement.split("==")
        assert requirements.get(name) == version, requirement


def test_dry_run_serves_same_settings(dry_run):
    base, _, _ = dry_run

    with urllib.request.urlopen(base + "/-/settings.json") as response:
        settings = json.loads(response.read())

    assert settings["sql_time_limit_ms"] == 1000
    assert settings["max_returned_rows"] == 1000
    assert settings["facet_time_limit_ms"] == 200
    assert settings["force_https_urls"] is True


def test_live_hash_matches_inspect(dry_run):
    base, db_path, _ = dry_run

    with urllib.request.urlopen(base + "/-/databases.json") as response:
        databases = json.loads(response.read())

    assert [entry["hash"] for entry in databases if entry["name"] == "ring"] == [content_hash(db_path)]
    assert needs_deploy(db_path, base) is False


def test_changed_database_needs_deploy(dry_run, tmp_path):
    base, db_path, _ = dry_run
    edited = tmp_path / "ring.db"
    shutil.copyfile(db_path, edited)
    with sqlite3.connect(edited) as connection:
        connection.execute("update agencies set video_requests = 13 where name = 'Riverbend Police Department'")

    assert needs_deploy(edited, base) is True


def test_changed_command_output(dry_run):
    base, db_path, _ = dry_run

    completed = subprocess.run(
        [sys.executable, "-m", "ringtracker.publish", "changed", "--db", str(db_path), "--site-url", base],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "false\n"


def test_unreadable_site_needs_deploy(httpserver, tmp_path):  # noqa: F811
    db_path = build_site_db(tmp_path / "ring.db")
    httpserver.expect_request("/-/databases.json").respond_with_response(Response("down", status=503))

    assert needs_deploy(db_path, httpserver.url_for("/").rstrip("/")) is True


def test_empty_site_url_needs_deploy(tmp_path):
    db_path = build_site_db(tmp_path / "ring.db")

    assert needs_deploy(db_path, "") is True


def test_local_command_binds_loopback():
    cmd = "datasette serve --host 0.0.0.0 -i ring.db --cors --port $PORT"

    command = local_command(cmd, 8123)

    assert command[0] == str(Path(sys.executable).parent / "datasette")
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[-2:] == ["--port", "8123"]


def test_pin_check_rejects_other_version():
    with pytest.raises(PublishError, match=r"datasette==0\.1 is pinned, but datasette 0\.65\.5"):
        check_install_pins(["datasette", "datasette==0.1"])


def test_pin_check_rejects_missing_package():
    with pytest.raises(PublishError, match="no-such-package-here==1.0 is not installed"):
        check_install_pins(["no-such-package-here==1.0"])


def test_artefact_dir_must_be_previous_artefact(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me\n")

    with pytest.raises(PublishError, match="contains no Dockerfile"):
        build_artefact(tmp_path, {})

    assert (tmp_path / "notes.txt").read_text() == "keep me\n"

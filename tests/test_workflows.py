"""Static checks of the GitHub Actions workflows and the Makefile's deploy flags."""

import ast
import re
import shlex
import subprocess
import sys
from importlib import metadata as package_metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW_NAMES = ("scrape", "deploy", "test")

# (low, high) of each cron field: minute, hour, day of month, month, day of week.
CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_errors(expression: str) -> list[str]:
    """Return what is wrong with a five-field cron expression as GitHub Actions reads it."""
    fields = expression.split()
    if len(fields) != 5:
        return [f"{expression!r} has {len(fields)} fields, not 5"]
    errors = []
    names_by_field = {3: MONTH_NAMES, 4: DAY_NAMES}
    for index, (field, (low, high)) in enumerate(zip(fields, CRON_RANGES)):
        names = names_by_field.get(index, ())
        for part in field.split(","):
            if not cron_part_valid(part.lower(), low, high, names):
                errors.append(f"field {index + 1} ({field!r}) has invalid part {part!r}")
    return errors


def cron_part_valid(part: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    base, _, step = part.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        return False
    if base == "*":
        return True
    bounds = base.split("-")
    if len(bounds) > 2:
        return False
    values = []
    for bound in bounds:
        if bound in names:
            values.append(names.index(bound) + (1 if names is MONTH_NAMES else 0))
        elif bound.isdigit():
            values.append(int(bound))
        else:
            return False
    return all(low <= value <= high for value in values) and values == sorted(values)


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())


def triggers(workflow: dict) -> dict:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    return workflow.get("on", workflow.get(True))


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def run_scripts(workflow: dict) -> list[str]:
    return [step["run"] for step in steps(workflow) if "run" in step]


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonical(name)] = version.strip()
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def make_command(target: str) -> list[str]:
    output = subprocess.run(
        ["make", "-n", "--no-print-directory", target], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return shlex.split(output.strip().splitlines()[-1])


def option_values(command: list[str], option: str) -> list[str]:
    return [command[index + 1] for index, word in enumerate(command) if word == option]


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_workflow_parses(name):
    workflow = load(name)

    assert workflow["name"]
    assert triggers(workflow)
    assert workflow["jobs"]


def test_cron_validator_rejects_bad():
    assert cron_errors("17 6 * * *") == []
    assert cron_errors("*/15 0-23 1,15 jan-jun mon-fri") == []
    assert cron_errors("60 6 * * *")
    assert cron_errors("17 24 * * *")
    assert cron_errors("17 6 0 * *")
    assert cron_errors("17 6 * 13 *")
    assert cron_errors("17 6 * * 8")
    assert cron_errors("17 6 * *")
    assert cron_errors("17 6-2 * * *")
    assert cron_errors("*/0 6 * * *")


def test_scrape_schedule_valid():
    schedule = triggers(load("scrape"))["schedule"]

    assert len(schedule) == 1
    expression = schedule[0]["cron"]
    assert cron_errors(expression) == []
    assert expression.split()[0] not in ("0", "*"), "run off the hour, when the scheduler is less busy"


def test_scrape_manual_trigger():
    assert "workflow_dispatch" in triggers(load("scrape"))


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("scrape", [{"contents": "write"}]),
        ("test", [{"contents": "read"}]),
        ("deploy", [{"contents": "read"}, {"contents": "read", "id-token": "write"}]),
    ],
)
def test_permissions_minimal(name, allowed):
    workflow = load(name)

    assert workflow["permissions"] in allowed
    for job in workflow["jobs"].values():
        assert "permissions" not in job or job["permissions"] in allowed


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_checkout_full_history(name):
    checkouts = [step for step in steps(load(name)) if step.get("uses", "").startswith("actions/checkout@")]

    assert checkouts
    for step in checkouts:
        assert step.get("with", {}).get("fetch-depth") == 0


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_python_version_pinned(name):
    setups = [step for step in steps(load(name)) if step.get("uses", "").startswith("actions/setup-python@")]

    assert len(setups) == 1
    assert setups[0]["with"]["python-version"] == "3.11"


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_actions_pinned(name):
    for step in steps(load(name)):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", step["uses"]), step["uses"]


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_pip_installs_pinned(name):
    for script in run_scripts(load(name)):
        for line in script.splitlines():
            words = shlex.split(line)
            if words[:2] != ["pip", "install"]:
                continue
            arguments = words[2:]
            if arguments[:1] == ["-r"]:
                assert arguments[1] in ("requirements.txt", "requirements-test.txt"), line
                assert len(arguments) == 2, line
            else:
                packages = [word for word in arguments if not word.startswith("-")]
                assert packages and all("==" in package for package in packages), line


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_no_ignored_failures(name):
    workflow = load(name)

    for script in run_scripts(workflow):
        assert not re.search(r"\|\|\s*(true|:)\b", script), script
        assert "set +e" not in script, script
    for step in steps(workflow):
        assert "continue-on-error" not in step
        assert step.get("shell", "bash") == "bash"


def test_scrape_steps_in_order():
    scripts = run_scripts(load("scrape"))
    joined = "\n".join(scripts)

    order = ["pip install -r requirements.txt", "git config user.name", "./scrape.sh --commit",
             "git pull --rebase", "git push", "python ingest.py", "make test"]
    positions = [joined.index(command) for command in order]
    assert positions == sorted(positions)
    assert 'git config user.email "41898282+github-actions[bot]@users.noreply.github.com"' in joined


def test_scrape_single_run_at_once():
    concurrency = load("scrape")["concurrency"]

    assert concurrency["group"]
    assert concurrency["cancel-in-progress"] is False


def test_deploy_follows_successful_scrape():
    deploy_triggers = triggers(load("deploy"))

    assert deploy_triggers["workflow_run"]["workflows"] == [load("scrape")["name"]]
    assert deploy_triggers["workflow_run"]["types"] == ["completed"]
    condition = load("deploy")["jobs"]["deploy"]["if"]
    assert "github.event.workflow_run.conclusion == 'success'" in condition


def test_deploy_force_input_boolean():
    force = triggers(load("deploy"))["workflow_dispatch"]["inputs"]["force"]

    assert force["type"] == "boolean"
    assert force["default"] is False


def test_deploy_trigger_paths_exist():
    paths = triggers(load("deploy"))["push"]["paths"]

    assert "data/**" in paths
    for pattern in paths:
        assert list(ROOT.glob(pattern)), f"no file in the repository matches {pattern}"


def test_deploy_restores_cached_database():
    cache = next(step for step in steps(load("deploy")) if step.get("uses", "").startswith("actions/cache@"))

    assert cache["with"]["path"] == "ring.db"
    assert "${{ github.sha }}" in cache["with"]["key"]
    assert cache["with"]["key"].startswith(cache["with"]["restore-keys"])


def test_deploy_publishes_only_when_needed():
    deploy_steps = steps(load("deploy"))
    names = [step.get("uses", step.get("run", "")) for step in deploy_steps]
    gated = [step for step in deploy_steps
             if step.get("uses", "").startswith("google-github-actions/") or "make publish" in step.get("run", "")]

    assert len(gated) == 3
    for step in gated:
        assert step["if"] == "steps.compare.outputs.changed == 'true' || inputs.force"
    build = next(index for index, name in enumerate(names) if "python ingest.py" in name)
    test = next(index for index, name in enumerate(names) if "make test" in name)
    publish = next(index for index, name in enumerate(names) if "make publish" in name)
    assert build < test < publish


def test_deploy_secrets_named():
    text = (WORKFLOWS / "deploy.yml").read_text()

    assert "credentials_json: ${{ secrets.GCP_SA_KEY }}" in text
    assert "project_id: ${{ secrets.GCP_PROJECT }}" in text
    assert "${{ vars.SITE_URL }}" in text


def test_publish_installs_pinned():
    command = make_command("publish")
    pins = requirement_pins()

    installs = option_values(command, "--install")
    assert installs
    for requirement in installs:
        name, separator, version = requirement.partition("==")
        assert separator, f"--install {requirement} has no == pin"
        assert pins.get(canonical(name)) == version, f"--install {requirement} differs from requirements.txt"


def test_publish_installs_plugin_imports():
    """Every package the site's plugins import is installed in the image, directly or through datasette."""
    installed_in_image = {canonical(requirement.partition("==")[0])
                          for requirement in option_values(make_command("publish"), "--install")}
    available = installed_in_image | dependency_closure(installed_in_image)
    distributions = package_metadata.packages_distributions()

    for module in plugin_imports():
        for distribution in distributions.get(module, []):
            assert canonical(distribution) in available, f"plugins import {module} from {distribution}, not installed"


def plugin_imports() -> set[str]:
    modules = set()
    for path in (ROOT / "plugins").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {module for module in modules if module not in sys.stdlib_module_names and module != "__future__"}


def dependency_closure(names: set[str]) -> set[str]:
    seen, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = package_metadata.requires(name) or []
        except package_metadata.PackageNotFoundError:
            continue
        for requirement in requirements:
            if "extra ==" in requirement:
                continue
            pending.append(canonical(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0]))
    return seen


def test_publish_uses_serve_flags():
    serve = make_command("serve")
    publish = make_command("publish")
    extra_options = shlex.split(option_values(publish, "--extra-options")[0])

    for option in ("--plugins-dir", "--template-dir", "-m"):
        assert option_values(publish, option) == option_values(serve, option)
    assert settings(extra_options) == settings(serve)
    assert [name for name, _ in settings(serve)] == [
        "sql_time_limit_ms", "max_returned_rows", "facet_time_limit_ms", "suggest_facets"
    ]
    assert option_values(serve, "-i") == [publish[3]]


def settings(command: list[str]) -> list[tuple[str, str]]:
    return [(command[index + 1], command[index + 2]) for index, word in enumerate(command) if word == "--setting"]

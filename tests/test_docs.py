"""The README documents every command-line option users have."""

import click
import pytest

import ingest
from ringtracker.cli import cli
from tests.conftest import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def long_options(command: click.Command) -> list[str]:
    return sorted(
        option
        for parameter in command.params
        if isinstance(parameter, click.Option)
        for option in parameter.opts
        if option.startswith("--") and option != "--help"
    )


@pytest.mark.parametrize(
    "name, command",
    [("ingest.py", ingest.main)] + sorted(cli.commands.items()),
)
def test_readme_lists_every_option(name, command):
    missing = [option for option in long_options(command) if f"`{option}" not in README]
    assert missing == [], f"README.md does not document these options of {name}"

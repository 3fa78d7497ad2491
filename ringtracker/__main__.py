from ringtracker.cli import cli

cli(prog_name="python -m ringtracker")

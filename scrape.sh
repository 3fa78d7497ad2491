#!/usr/bin/env bash
# Scrape Ring's Active Agency Map into data/agencies.json. Arguments go to
# `python -m ringtracker scrape`; run it with --help for the options.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

if [[ -x .venv/bin/python ]]; then
    python=.venv/bin/python
else
    python=python3
fi

exec "$python" -m ringtracker scrape "$@"

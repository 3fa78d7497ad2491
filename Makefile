# Two commands a new user needs: `make serve` and `make test`.
# Both create the virtual environment and install the pinned packages first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8001
HOST ?= 127.0.0.1
DB ?= ring.db

SERVE_FLAGS := -i $(DB) --plugins-dir plugins --template-dir templates -m metadata.yml --setting sql_time_limit_ms 1000 --setting max_returned_rows 1000 --setting facet_time_limit_ms 200

.PHONY: install build serve test clean

$(BIN)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

install: $(BIN)/.installed

build: install
	$(BIN)/python ingest.py --db $(DB)

serve: build
	$(BIN)/datasette serve $(SERVE_FLAGS) --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DB) test-artifacts

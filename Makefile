# Two commands a new user needs: `make serve` and `make test`.
# Both create the virtual environment and install the pinned packages first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8001
HOST ?= 127.0.0.1
DB ?= ring.db

# The site's datasette flags, shared by `make serve` and the Cloud Run deploy.
SITE_DIRS := --plugins-dir plugins --template-dir templates -m metadata.yml
# suggest_facets off: otherwise every table page tries each column as a facet,
# which more than doubled the time of the agencies page in the benchmark.
SITE_SETTINGS := --setting sql_time_limit_ms 1000 --setting max_returned_rows 1000 --setting facet_time_limit_ms 200 --setting suggest_facets off
SERVE_FLAGS := -i $(DB) $(SITE_DIRS) $(SITE_SETTINGS)

# Deploy: the same flags, in the form `datasette publish cloudrun` takes them. The image
# installs only what --install names, so each package the site and its plugins import is
# listed with its pin from requirements.txt. The chart plugin reads static/states-10m.json
# next to plugins/, so the static directory goes into the image too.
SERVICE ?= ring-partnership-tracker
PUBLISH_INSTALLS := --install datasette==0.65.5 --install datasette-cluster-map==0.18.2 --install datasette-leaflet==0.2.2 --install datasette-vega==0.6.2 --install datasette-atom==0.9 --install asgi-gzip==0.3 --install us==4.0.0 --install vl-convert-python==1.9.0.post1
PUBLISH_FLAGS := $(DB) $(SITE_DIRS) --extra-options "$(SITE_SETTINGS)" --static static:static $(PUBLISH_INSTALLS) --service $(SERVICE)
PUBLISH_DIR ?= build/publish

.PHONY: install build serve test clean publish publish-dry-run

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

# Needs gcloud, logged in with a default project (the deploy workflow sets both up).
publish: build
	$(BIN)/datasette publish cloudrun $(PUBLISH_FLAGS)

# Builds what `make publish` uploads into $(PUBLISH_DIR) and serves it on 127.0.0.1:$(PORT).
publish-dry-run: build
	$(BIN)/python -m ringtracker.publish dry-run $(PUBLISH_FLAGS) --output-dir $(PUBLISH_DIR) --port $(PORT)

clean:
	rm -rf $(VENV) $(DB) test-artifacts

# Benchmarks of the build and the site on synthetic histories (BENCHMARKS.md).
# FULL=1 uses the 5-year histories instead of one year.
.PHONY: bench
bench: install
	$(BIN)/python -m bench.run $(if $(filter 1,$(FULL)),--full-size)

# Coverage-guided fuzzing of the KML parser with atheris. New inputs go to FUZZ_CORPUS,
# crashing inputs to test-artifacts/fuzz/; turn each crash into a tests/corpus case.
FUZZ_SECONDS ?= 180
FUZZ_CORPUS ?= test-artifacts/fuzz/corpus

.PHONY: fuzz
fuzz: install
	mkdir -p $(FUZZ_CORPUS)
	$(BIN)/python fuzz/fuzz_kml.py -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
		-artifact_prefix=test-artifacts/fuzz/ $(FUZZ_CORPUS) tests/corpus tests/captures

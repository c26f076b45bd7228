# Two commands: `make run` serves the bundled demo network; `make test` runs the suite.
# Both set everything up first (a .venv with the package, ical.js for the client tests).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JS     := tests/js/node_modules/.package-lock.json
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(JS): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error

run: $(STAMP)
	$(BIN)/aggregator migrate
	-$(BIN)/aggregator refresh
	$(BIN)/aggregator serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(JS)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check aggregator tests bench

bench: $(STAMP)
	$(BIN)/python bench/parse_bench.py

clean:
	rm -rf $(VENV) tests/js/node_modules aggregator.db .pytest_cache

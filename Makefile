# Two commands: `make run` serves the bundled demo network; `make test` runs the suite.
# Both set everything up first (a .venv with the package, ical.js for the client tests, and
# for `make test` only, Debian's chromium for the browser tests, postgresql for the store's
# tests on PostgreSQL and nginx for the proxy's tests).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JS     := tests/js/node_modules/.package-lock.json
HOST   ?= 127.0.0.1
PORT   ?= 8080
# Debian's build, driven by Playwright (never `playwright install`, which downloads its own);
# DejaVu so that screenshots have the same glyphs on every machine.
CHROMIUM_PKGS := chromium fonts-dejavu-core
# Debian's PostgreSQL server: the suite starts its own cluster (initdb, pg_ctl) in a temporary
# folder and runs every store, refresh and web test on it as well as on SQLite
POSTGRES_PKGS := postgresql
# Debian's nginx: the suite runs deploy/nginx.conf in front of the app (tests/test_proxy.py)
NGINX_PKGS := nginx-light

.PHONY: install run test chromium postgresql nginx lint bench fuzz translations clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(JS): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error

# Installed only when missing; needs root (a fresh Debian CI machine or container).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser tests"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CHROMIUM_PKGS) >/dev/null; }

# Installed only when missing (no initdb on PATH nor under /usr/lib/postgresql); needs root.
postgresql:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian postgresql for the PostgreSQL tests"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(POSTGRES_PKGS) >/dev/null; }

# Installed only when missing; needs root.
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  echo "installing Debian nginx for the proxy tests"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(NGINX_PKGS) >/dev/null; }

run: $(STAMP)
	$(BIN)/aggregator migrate
	-$(BIN)/aggregator refresh
	$(BIN)/aggregator serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(JS) chromium postgresql nginx
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check aggregator tests bench

bench: $(STAMP)
	$(BIN)/python bench/parse_bench.py

# The parsers on hostile input for FUZZ_MINUTES (default 10), new random examples every round;
# stops at the first failure (tests/fuzz/README.md). `make test` runs the same tests, seeded.
FUZZ_MINUTES  ?= 10
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP)
	FUZZ_MINUTES=$(FUZZ_MINUTES) FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python tests/fuzz/run.py

# The gettext catalogues (aggregator/locale/<lang>/LC_MESSAGES/{pages,problems}.po) brought up
# to date with the words in the code and templates (babel.cfg, babel-problems.cfg): new words
# come in untranslated, gone ones are kept as obsolete. A second run changes nothing.
translations: $(STAMP)
	$(BIN)/python scripts/translations.py

clean:
	rm -rf $(VENV) tests/js/node_modules aggregator.db .pytest_cache test-artifacts

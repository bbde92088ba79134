# skulens: `make run` sets up and runs; `make test` sets up and runs the tests.
# Both are idempotent: a second run only checks that everything is in place.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SKULENS := $(VENV)/bin/skulens
STAMP  := $(VENV)/.installed
DATA   ?= skulens-data
CATALOG ?=
DEMO   ?= ../shared/datasets/grocery

.PHONY: setup system venv models run check test test-all api-check clean-venv

setup: system venv models

# Debian packages: Tesseract OCR (the second OCR engine, `SKULENS_OCR__ENGINE=tesseract`), Chromium (the
# headless browser the web-page tests drive; the service itself does not need it), Fashion-MNIST's
# 70,000 product photos (real vectors for `skulens bench --vector-data`; MIT licence) and PostgreSQL
# (the tests start their own server; the embedded default needs none).
system:
	@missing=""; \
	command -v tesseract >/dev/null 2>&1 && tesseract --list-langs 2>/dev/null | grep -qx eng || missing="tesseract-ocr tesseract-ocr-eng"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || missing="$$missing dataset-fashion-mnist"; \
	command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Verifies the model cache by sha256 and fills what is missing (nothing else downloads models).
models: venv
	$(SKULENS) models fetch

# Indexes CATALOG when given, else the demo shop when the grocery data set is there (its 81 products
# with demo categories, brands and made-up prices); changed products only. Then serves on BIND:PORT.
BIND ?= 127.0.0.1
PORT ?= 8000
run: setup
	@if [ -n "$(CATALOG)" ]; then $(SKULENS) --data $(DATA) index $(CATALOG); \
	elif [ -f "$(DEMO)/manifest.csv" ]; then $(SKULENS) demo-csv $(DEMO) $(DATA)/demo-catalogue.csv && \
	  $(SKULENS) --data $(DATA) index $(DATA)/demo-catalogue.csv; fi
	$(SKULENS) serve --data $(DATA) --host $(BIND) --port $(PORT)

# The habits that keep the code's shape: lint and import order (ruff), the layers (import-linter
# contracts in pyproject.toml) and the type check (mypy) on the product packages; any failure fails `make test`.
check: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: setup check
	$(VENV)/bin/pytest -q

# schemathesis against a running server on an empty data directory: no 5xx, no schema violations.
# (positive_data_acceptance is left out: random bytes are a valid multipart "file" but not an image.)
api-check: setup
	@tmp=$$(mktemp -d); \
	$(SKULENS) serve --data $$tmp/data --port 8765 >$$tmp/server.log 2>&1 & pid=$$!; \
	trap "kill $$pid; rm -rf $$tmp" EXIT; \
	for i in $$(seq 180); do $(PY) -c "import httpx, sys; sys.exit(httpx.get('http://127.0.0.1:8765/readyz').status_code != 200)" 2>/dev/null && break; sleep 1; done; \
	$(VENV)/bin/schemathesis run http://127.0.0.1:8765/openapi.json --checks all \
	  --exclude-checks positive_data_acceptance --max-examples 100

clean-venv:
	rm -rf $(VENV)

# skulens: `make run` sets up and runs; `make test` sets up and runs the tests.
# Both are idempotent: a second run only checks that everything is in place.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SKULENS := $(VENV)/bin/skulens
STAMP  := $(VENV)/.installed
DATA   ?= skulens-data
CATALOG ?= ../shared/datasets/grocery/catalog
QUERY  ?= $(firstword $(wildcard ../shared/datasets/grocery/photos/val/*/*/*.jpg ../shared/datasets/grocery/photos/val/*/*.jpg))

.PHONY: setup system venv models run test test-all clean-venv

setup: system venv models

# Tesseract (Debian packages) is the one system dependency.
system:
	@command -v tesseract >/dev/null 2>&1 && tesseract --list-langs 2>/dev/null | grep -qx eng || { \
	  echo "installing Tesseract OCR (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq tesseract-ocr tesseract-ocr-eng >/dev/null; }

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Verifies the model cache by sha256 and fills what is missing (nothing else downloads models).
models: venv
	$(SKULENS) models fetch

run: setup
	$(SKULENS) --data $(DATA) index $(CATALOG)
	$(SKULENS) --data $(DATA) search "$(QUERY)" --k 5

test: setup
	$(VENV)/bin/pytest -q

clean-venv:
	rm -rf $(VENV)

# xrtop — `make demo` and `make test` set up everything they need on a fresh Debian/Ubuntu.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LAB    ?= $(abspath ../shared/lab)
LAB_SUITES ?= bullseye trixie sid
DEMO   := xrtop/demo/demo.R
STAMP  := $(VENV)/.installed

.PHONY: demo test test-quick lint typecheck pytest r lab tools bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' 2>&1 | grep -v -e '^ *$$' -e 'WARNING' -e '\*\*\*' -e '!!' -e 'Please be careful' -e 'name as your package' -e 'WheelFile' || true
	touch $(STAMP)

# R itself: installed with apt-get when running as root, otherwise the one command to run.
r:
	@if ! command -v Rscript >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "xrtop: installing R (r-base-core) with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends r-base-core >/dev/null; \
	  else \
	    echo "xrtop: R is not installed. Run: sudo apt-get install r-base-core"; exit 1; \
	  fi; \
	fi

# Programs the tests drive: tmux (end-to-end), littler (embedded R), profvis (reads our
# files), when running as root.
tools: r
	@missing=""; command -v tmux >/dev/null 2>&1 || missing="$$missing tmux"; \
	command -v r >/dev/null 2>&1 || missing="$$missing r-cran-littler"; \
	Rscript -e 'quit(status = !requireNamespace("profvis", quietly = TRUE))' >/dev/null 2>&1 || missing="$$missing r-cran-profvis"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
	  echo "xrtop: installing$$missing with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Other R versions in Debian chroots (../shared/lab); idempotent, minutes the first time.
lab:
	@if [ "$$(id -u)" = 0 ] && [ -x "$(LAB)/rlab-setup" ]; then \
	  "$(LAB)/rlab-setup" $(LAB_SUITES) >/dev/null 2>.lab-setup.log || { tail -n 30 .lab-setup.log; exit 1; }; \
	else \
	  echo "xrtop: skipping the R version lab (needs root and $(LAB))"; \
	fi

demo: $(STAMP) r
	$(BIN)/xrtop -- Rscript $(DEMO)

SOURCES := $(wildcard xrtop sampler widgets tests bench)

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: $(STAMP)
	$(BIN)/mypy xrtop sampler widgets

pytest: $(STAMP) r tools lab
	XRTOP_LAB=$(LAB) $(BIN)/pytest

test: lint typecheck pytest

# The pure-logic tests alone (no R needed; ~30 s of CPU): pytest -m "not live".
test-quick: $(STAMP)
	$(BIN)/pytest -m "not live"

bench: $(STAMP) r
	$(BIN)/python bench/run.py
	$(BIN)/python bench/big_files.py
	$(BIN)/python bench/ui_big.py

screenshots: $(STAMP) r
	$(BIN)/python -m xrtop.screenshots screenshots

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# xrtop — `make demo` and `make test` set up everything they need on a fresh Debian/Ubuntu.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LAB    ?= $(abspath ../shared/lab)
LAB_SUITES ?= bullseye trixie sid
DEMO   := xrtop/demo/demo.R
STAMP  := $(VENV)/.installed
# R packages the tests drive, on the host and in every lab chroot (Debian's builds).
R_PACKAGES   := r-cran-callr r-cran-future r-cran-data.table
R_PACKAGES_Q := "callr", "future", "data.table"

.PHONY: demo test test-quick pythons lint typecheck pytest r lab tools bench screenshots clean container

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]' 2>&1 | grep -v -e '^ *$$' -e 'WARNING' -e '\*\*\*' -e '!!' -e 'Please be careful' -e 'name as your package' -e 'WheelFile' || true
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
# files), podman with runc and debootstrap (the container image), go (go tool pprof reads our
# pprof files), gdb (native frames' ground truth), a C compiler with make and binutils (the
# tests' C code: R CMD SHLIB, unwind tables), when running as root.
tools: r
	@missing=""; command -v tmux >/dev/null 2>&1 || missing="$$missing tmux"; \
	command -v r >/dev/null 2>&1 || missing="$$missing r-cran-littler"; \
	Rscript -e 'quit(status = !requireNamespace("profvis", quietly = TRUE))' >/dev/null 2>&1 || missing="$$missing r-cran-profvis"; \
	command -v podman >/dev/null 2>&1 || missing="$$missing podman runc"; \
	command -v debootstrap >/dev/null 2>&1 || missing="$$missing debootstrap"; \
	command -v go >/dev/null 2>&1 || missing="$$missing golang-go"; \
	command -v gdb >/dev/null 2>&1 || missing="$$missing gdb"; \
	for tool in cc make objcopy readelf; do command -v $$tool >/dev/null 2>&1 || { missing="$$missing gcc make binutils"; break; }; done; \
	Rscript -e 'quit(status = !all(sapply(c($(R_PACKAGES_Q)), requireNamespace, quietly = TRUE)))' >/dev/null 2>&1 || missing="$$missing $(R_PACKAGES)"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
	  echo "xrtop: installing$$missing with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# podman's default ulimits cannot be set inside some VMs and containers (CI): none.
	@conf=/etc/containers/containers.conf; \
	if [ "$$(id -u)" = 0 ] && command -v podman >/dev/null 2>&1 && ! grep -qs '^default_ulimits' $$conf; then \
	  echo "xrtop: podman: default_ulimits = [] in $$conf"; mkdir -p /etc/containers; \
	  if grep -qs '^\[containers\]' $$conf; then sed -i '/^\[containers\]/a default_ulimits = []' $$conf; \
	  else printf '[containers]\ndefault_ulimits = []\n' >> $$conf; fi; \
	fi

# Other R versions in Debian chroots (../shared/lab); idempotent, minutes the first time.
# Each chroot also gets the R packages the tests run (parallel workers, compiled code).
lab:
	@if [ "$$(id -u)" = 0 ] && [ -x "$(LAB)/rlab-setup" ]; then \
	  "$(LAB)/rlab-setup" $(LAB_SUITES) >/dev/null 2>.lab-setup.log || { tail -n 30 .lab-setup.log; exit 1; }; \
	  for suite in $(LAB_SUITES); do root=/opt/rlab/$$suite; \
	    chroot $$root Rscript -e 'quit(status = !all(sapply(c($(R_PACKAGES_Q)), requireNamespace, quietly = TRUE)))' >/dev/null 2>&1 && continue; \
	    echo "xrtop: installing $(R_PACKAGES) in the $$suite lab"; \
	    unshare --mount --propagation private -- /bin/sh -ec 'mount -t proc proc "$$1/proc"; \
	      exec chroot "$$1" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(R_PACKAGES)' \
	      lab "$$root" >>.lab-setup.log 2>&1 || { tail -n 30 .lab-setup.log; exit 1; }; \
	  done; \
	else \
	  echo "xrtop: skipping the R version lab (needs root and $(LAB))"; \
	fi

demo: $(STAMP) r
	$(BIN)/xrtop -- Rscript $(DEMO)

# The container image (docs/container-image.md), with podman, else docker. xrtop and its
# dependencies are built into wheels here, so the build downloads nothing; when BASE cannot
# be pulled (no registry), a Debian base with python3 is made with debootstrap (as root).
ENGINE     ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)
IMAGE      ?= localhost/xrtop
BASE       ?= python:3.12-slim
BASE_SUITE ?= bookworm
LOCAL_BASE ?= localhost/xrtop-base:$(BASE_SUITE)
# podman on a machine without systemd (CI, VMs, containers) must manage cgroups itself.
ENGINE_FLAGS ?= $(if $(filter podman,$(ENGINE)),$(if $(wildcard /run/systemd/system),,--cgroup-manager=cgroupfs))
ENGINE_CMD := $(ENGINE) $(ENGINE_FLAGS)

container: $(STAMP)
	@command -v $(ENGINE) >/dev/null 2>&1 || { echo "xrtop: neither podman nor docker is installed (make tools, as root)"; exit 1; }
	@rm -rf .container/wheels && mkdir -p .container
	@# A fixed date in the wheels' files: unchanged sources give the same wheel (a cached build).
	@SOURCE_DATE_EPOCH=315532800 $(BIN)/pip wheel -q --wheel-dir .container/wheels . >.container/wheels.log 2>&1 \
	  || { tail -n 30 .container/wheels.log; exit 1; }
	@base="$(BASE)"; \
	if ! $(ENGINE_CMD) image inspect "$$base" >/dev/null 2>&1 \
	   && ! $(ENGINE_CMD) pull -q "$$base" >/dev/null 2>&1; then \
	  base="$(LOCAL_BASE)"; \
	  if ! $(ENGINE_CMD) image inspect "$$base" >/dev/null 2>&1; then \
	    if [ "$$(id -u)" != 0 ] || ! command -v debootstrap >/dev/null 2>&1; then \
	      echo "xrtop: $(BASE) cannot be pulled, and making a Debian base needs root and debootstrap: sudo make container"; exit 1; \
	    fi; \
	    echo "xrtop: $(BASE) cannot be pulled; making $$base from Debian $(BASE_SUITE) (debootstrap)"; \
	    mirror=$$(sed -n 's|^URIs: *\([^ ]*/debian\)/*$$|\1|p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1); \
	    root=$$(mktemp -d /var/tmp/xrtop-base.XXXXXX); \
	    debootstrap --variant=minbase --include=python3,python3-venv $(BASE_SUITE) $$root $$mirror >$$root.log 2>&1 \
	      || { tail -n 20 $$root.log; rm -rf --one-file-system $$root $$root.log; exit 1; }; \
	    rm -rf $$root/var/cache/apt/archives/*.deb $$root/var/lib/apt/lists/* $$root.log; \
	    tar -C $$root -c . | $(ENGINE_CMD) import -q - "$$base" >/dev/null; status=$$?; \
	    rm -rf --one-file-system $$root; [ $$status = 0 ] || exit 1; \
	  fi; \
	fi; \
	echo "xrtop: building $(IMAGE) on $$base with $(ENGINE)"; \
	old=$$($(ENGINE_CMD) image inspect -f '{{.Id}}' $(IMAGE) 2>/dev/null); \
	$(ENGINE_CMD) build -q --build-arg BASE="$$base" -t $(IMAGE) -f Containerfile . >/dev/null || exit 1; \
	new=$$($(ENGINE_CMD) image inspect -f '{{.Id}}' $(IMAGE)); \
	if [ -n "$$old" ] && [ "$$old" != "$$new" ]; then $(ENGINE_CMD) rmi "$$old" >/dev/null 2>&1 || true; fi

SOURCES := $(wildcard xrtop sampler widgets tests bench)

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: $(STAMP)
	$(BIN)/mypy $(SOURCES)

# The pure-logic tests on every CPU (pytest-xdist), then the live ones alone: those time R.
pytest: $(STAMP) r tools lab
	$(BIN)/pytest -n auto -m "not live"
	XRTOP_LAB=$(LAB) $(BIN)/pytest -m live --durations=25

# Python 3.9 and 3.13 (the oldest and newest supported) when the machine has them: an
# install, the pure-logic tests and a real-R smoke test each (tests/other-pythons).
pythons: $(STAMP) r tools
	tests/other-pythons

test: lint typecheck pytest pythons

# The pure-logic tests alone (no R needed; ~30 s of CPU), on every CPU: pytest -m "not live".
test-quick: $(STAMP)
	$(BIN)/pytest -n auto -m "not live"

# The span A/B runs on the newest lab R when there is one (spans are used from R 4.4).
SPAN_SUITE ?= $(if $(wildcard /opt/rlab/sid/usr/lib/R/bin/exec/R),sid,host)

bench: $(STAMP) r
	$(BIN)/python bench/run.py
	$(BIN)/python bench/big_files.py
	$(BIN)/python bench/ui_big.py
	$(BIN)/python bench/ui_bench.py
	$(BIN)/python bench/span_cost.py --suite $(SPAN_SUITE)
	$(BIN)/python bench/subprocesses.py
	$(BIN)/python bench/native_cost.py
	$(BIN)/python bench/native_stop_cost.py --workloads loop,varied
	$(BIN)/python bench/native_stop_cost.py --workloads loop --suite $(SPAN_SUITE)

screenshots: $(STAMP) r
	$(BIN)/python -m xrtop.screenshots screenshots

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .container

# maildrill — every target does its own set-up on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help install test test-fast test-wheel lint typecheck demo demo-api demo-fleet bench system-deps clean

help:
	@echo "make test         ruff + mypy + the whole test suite, the layering test included (creates .venv, installs maildrill[dev])"
	@echo "make typecheck    mypy (strict on fake_mta, the analysis, the fault proxy and the vocabulary)"
	@echo "make test-wheel   the product as users get it: build the wheel, pip install it into a fresh venv, use it (~3 min)"
	@echo "make demo         the throttle-storm drill against the naive and the hardened mailer, side by side (~3 min; runs maildrill demo)"
	@echo "make demo-api     SES losing responses: boto3's retries duplicate (naive) or not (hardened), side by side (~1 min)"
	@echo "make demo-fleet   the fake MTA fleet alone: every behaviour answering a real SMTP client"
	@echo "make bench        every benchmark: MTA throughput, proxy overhead, analysis scale, scale-out (make system-deps)"
	@echo "make system-deps  optional Debian packages for the optional tests/benchmarks (Postfix, socat, Redis, Chromium, iproute2)"

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "maildrill needs Python 3.11+, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# mypy reads a tree of links that gives the folders their installed names (it cannot follow the editable finder)
MYPY_TREE := $(VENV)/mypy-tree
# checked strictly (see [tool.mypy] in pyproject.toml); the modules they import are read, not reported on
MYPY_TARGETS := -p maildrill.fake_mta -p maildrill.harness.analysis -p maildrill.harness.faults -m maildrill.vocabulary -m maildrill.polling \
	-m maildrill.harness.metrics -m maildrill.harness.events -m maildrill.harness.store -m maildrill.harness.clock

typecheck: $(STAMP)
	@rm -rf $(MYPY_TREE) && mkdir -p $(MYPY_TREE)/maildrill
	@for f in maildrill/*; do ln -s "$(CURDIR)/$$f" $(MYPY_TREE)/maildrill/; done
	@for d in harness fake_mta examples; do ln -s "$(CURDIR)/$$d" $(MYPY_TREE)/maildrill/$$d; done
	cd $(MYPY_TREE) && "$(CURDIR)/$(VENV)/bin/mypy" --config-file "$(CURDIR)/pyproject.toml" $(MYPY_TARGETS)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(MAKE) typecheck
	$(PY) -m pytest -q -p no:randomly --durations=25

test-fast: $(STAMP)
	$(PY) -m pytest -q tests/unit

# The wheel, installed (not editable) into a fresh virtualenv outside the checkout: CLI, bundled drills, init,
# one drill end to end, and the pytest plugin in a project with its own harness/ package.
test-wheel:
	PYTHON=$(PYTHON) tests/product/check_wheel.sh

demo: $(STAMP)
	$(VENV)/bin/maildrill demo

demo-api: $(STAMP)
	$(VENV)/bin/maildrill demo --api

demo-fleet: $(STAMP)
	$(PY) -m maildrill.harness.demo_fleet

bench: $(STAMP)
	$(PY) benchmarks/mta_throughput.py
	$(PY) benchmarks/proxy_overhead.py
	$(PY) benchmarks/analysis_scale.py
	$(PY) benchmarks/scale_out.py

# Optional outside components. Tests that need them skip with the reason when they are absent (fail when CI is set).
system-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq; \
		for pkg in postfix socat redis-server chromium iproute2; do \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg >/dev/null \
			|| echo "system-deps: could not install $$pkg; the tests that need it will skip, saying so (fail when CI is set)"; \
		done; \
	else echo "system-deps: needs root and apt-get; install postfix, socat, redis-server, chromium and iproute2 yourself"; fi

clean:
	rm -rf $(VENV) build dist *.egg-info

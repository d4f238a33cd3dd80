# make demo: profile the bundled example.  make test: build and test on every CPython present
# (our tests, then upstream pyinstrument's own suite against our package: tools/upstream-suite.sh).
SHELL := /bin/bash
PYTHONS := $(shell tools/pythons.sh)
# the free-threaded builds (python3.13t) apart from the GIL builds
FREE_THREADED_PYTHONS := $(filter %t,$(PYTHONS))
GIL_PYTHONS := $(filter-out %t,$(PYTHONS))
DEMO_PYTHON ?= $(firstword $(filter %python3.12,$(PYTHONS)) $(PYTHONS))
# one interpreter per frame model: heap frame objects (3.9/3.10), data-stack chunks (3.11+),
# and the free-threaded build, whose threads run at once
SANITIZE_PYTHONS ?= $(firstword $(filter %python3.10,$(PYTHONS))) $(lastword $(GIL_PYTHONS)) \
    $(firstword $(FREE_THREADED_PYTHONS))
# the HTML report's in-browser tests check JavaScript, the same on every Python: run once,
# on the oldest interpreter
BROWSER_PYTHON ?= $(firstword $(PYTHONS))
# the tests that read no interpreter internals (tests/conftest.py: PORTABLE_FILES) run on the
# oldest and the newest GIL interpreter and on the free-threaded ones; everything else on every
# one (each full run costs CI about 2.5 minutes more)
FULL_PYTHONS ?= $(sort $(firstword $(GIL_PYTHONS)) $(lastword $(GIL_PYTHONS)) $(FREE_THREADED_PYTHONS))
PYTEST_ARGS ?= -q

.PHONY: demo test test-fast test-upstream test-sanitize lint typecheck bench bench-quick clean

demo:
	@py=$$(tools/venv.sh $(DEMO_PYTHON)) && $$py -m pyinstrument examples/demo.py

test:
	@test -n "$(PYTHONS)" || { echo "no CPython 3.9-3.15 found (see tools/pythons.sh)"; exit 1; }
	@tools/test-tools.sh
	@export PYINSTRUMENT_PYROSCOPE_BIN=$$(tools/pyroscope.sh); \
	failed=""; for py in $(PYTHONS); do \
	    echo "=== $$($$py -c 'import sys; print(sys.version.split()[0])') ($$py)"; \
	    if [ "$$py" = "$(BROWSER_PYTHON)" ]; then only=""; else only="not browser"; fi; \
	    case " $(FULL_PYTHONS) " in *" $$py "*) ;; *) only="$${only:+$$only and }not portable";; esac; \
	    venv=$$(PYINSTRUMENT_WERROR=1 tools/venv.sh $$py) || { failed="$$failed $$py"; continue; }; \
	    $$venv -m pytest $(PYTEST_ARGS) $${only:+-m "$$only"} tests || failed="$$failed $$py"; \
	    tools/upstream-suite.sh $$venv || failed="$$failed upstream-suite:$$py"; \
	done; \
	$(MAKE) --no-print-directory test-sanitize || failed="$$failed sanitize"; \
	if [ -n "$$failed" ]; then echo "FAILED on:$$failed"; exit 1; fi

# the quick check while working: one interpreter, no browser, no sanitizers (a few minutes)
test-fast:
	@venv=$$(PYINSTRUMENT_WERROR=1 tools/venv.sh $(DEMO_PYTHON)) && $$venv -m pytest $(PYTEST_ARGS) -m "not browser" -x tests

# upstream pyinstrument's own test suite against our package, on one interpreter (about 10 s;
# the exclusions, with their reasons: tests/upstream/excluded.txt)
test-upstream:
	@venv=$$(PYINSTRUMENT_WERROR=1 tools/venv.sh $(DEMO_PYTHON)) && tools/upstream-suite.sh $$venv

# ruff (lint and format) and mypy on the package, with the versions pyproject.toml pins
lint:
	@venv=$$(PYINSTRUMENT_EXTRAS=test,lint tools/venv.sh $(DEMO_PYTHON)) && \
	    $$venv -m ruff check src && $$venv -m ruff format --check src

typecheck:
	@venv=$$(PYINSTRUMENT_EXTRAS=test,lint tools/venv.sh $(DEMO_PYTHON)) && $$venv -m mypy

# the engine's tests in an AddressSanitizer + UndefinedBehaviorSanitizer build
test-sanitize:
	@for py in $(SANITIZE_PYTHONS); do \
	    echo "=== sanitizers (ASan+UBSan) on $$py"; \
	    venv=$$(PYINSTRUMENT_WERROR=1 PYINSTRUMENT_SANITIZE=1 tools/venv.sh $$py) && \
	    LD_PRELOAD="$$(gcc -print-file-name=libasan.so):$$(gcc -print-file-name=libubsan.so)" \
	    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $$venv -m pytest $(PYTEST_ARGS) -m engine tests || exit 1; \
	done

# benchmarks against upstream pyinstrument, cProfile and py-spy: docs/benchmarks.md (about 45 min)
bench:
	@py=$$(tools/venv.sh $(DEMO_PYTHON)) && $$py bench/run.py $(BENCH_ARGS)

# the same, shorter, on one interpreter (under 3 minutes): bench/out/quick.md
bench-quick:
	@py=$$(tools/venv.sh $(DEMO_PYTHON)) && $$py bench/run.py --quick $(BENCH_ARGS)

clean:
	rm -rf build .venvs src/*.egg-info src/pyinstrument/*.so

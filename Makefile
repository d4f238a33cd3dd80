# make demo: profile the bundled example.  make test: build and test on every CPython present.
SHELL := /bin/bash
PYTHONS := $(shell tools/pythons.sh)
DEMO_PYTHON ?= $(lastword $(filter %python3.12 %python3.13,$(PYTHONS)) $(firstword $(PYTHONS)))
SANITIZE_PYTHON ?= $(DEMO_PYTHON)
PYTEST_ARGS ?= -q

.PHONY: demo test test-one test-sanitize bench clean

demo:
	@py=$$(tools/venv.sh $(DEMO_PYTHON)) && $$py -m pyinstrument examples/demo.py

test:
	@test -n "$(PYTHONS)" || { echo "no CPython 3.9-3.15 found (see tools/pythons.sh)"; exit 1; }
	@failed=""; for py in $(PYTHONS); do \
	    echo "=== $$($$py -c 'import sys; print(sys.version.split()[0])') ($$py)"; \
	    venv=$$(tools/venv.sh $$py) && $$venv -m pytest $(PYTEST_ARGS) tests || failed="$$failed $$py"; \
	done; \
	$(MAKE) --no-print-directory test-sanitize || failed="$$failed sanitize"; \
	if [ -n "$$failed" ]; then echo "FAILED on:$$failed"; exit 1; fi

# the engine's tests in an AddressSanitizer + UndefinedBehaviorSanitizer build
test-sanitize:
	@echo "=== sanitizers (ASan+UBSan) on $(SANITIZE_PYTHON)"
	@venv=$$(PYINSTRUMENT_SANITIZE=1 tools/venv.sh $(SANITIZE_PYTHON)) && \
	    LD_PRELOAD="$$(gcc -print-file-name=libasan.so):$$(gcc -print-file-name=libubsan.so)" \
	    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $$venv -m pytest $(PYTEST_ARGS) -m engine tests

bench:
	@py=$$(tools/venv.sh $(DEMO_PYTHON)) && $$py bench/overhead.py

clean:
	rm -rf build .venvs src/*.egg-info src/pyinstrument/*.so

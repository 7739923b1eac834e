# Two commands for a fresh machine (Python 3.10+ with pip):
#   make demo   set up .venv and run the whole pipeline on the embedded default (no network, no GPU)
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-out

.PHONY: demo test test-fast bench clean

$(BIN)/freehub: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(BIN)/freehub

demo: $(BIN)/freehub
	$(BIN)/freehub demo --out $(DEMO_DIR)

test: $(BIN)/freehub
	$(BIN)/python -m pytest -q

test-fast: $(BIN)/freehub
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(BIN)/freehub
	for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info

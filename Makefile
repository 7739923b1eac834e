# Two commands for a fresh machine (Python 3.10+ with pip):
#   make demo   set up .venv and run the whole pipeline on the embedded default (no network, no GPU)
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-out

.PHONY: demo test test-fast bench bench-compare bench-compare-quick clean

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
	for script in bench/bench_data.py bench/bench_zoo.py bench/bench_collect.py; do $(BIN)/python $$script || exit 1; done

# FREE beside every baseline on the embedded zoo (3 seeds, about 1.5 hours on 2 cores), then FIVE's recovery speed
# the image priors by architecture, where the teachers' knowledge is lost (distillation inputs) and prior distillation by prior.
bench-compare: $(BIN)/freehub
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	$(BIN)/python bench/bench_compare.py --out bench_results --jobs 2
	$(BIN)/python bench/bench_free.py --out bench_results
	$(BIN)/python bench/bench_priors.py --out bench_results
	$(BIN)/python bench/bench_distill_inputs.py --run bench_results/work/runs/free-seed0 --out bench_results
	$(BIN)/python bench/bench_prior_distill.py --out bench_results

bench-compare-quick: $(BIN)/freehub
	$(BIN)/python bench/bench_compare.py --quick --out bench_results_quick
	$(BIN)/python bench/bench_free.py --quick --out bench_results_quick
	$(BIN)/python bench/bench_priors.py --quick --out bench_results_quick
	$(BIN)/python bench/bench_distill_inputs.py --quick --out bench_results_quick
	$(BIN)/python bench/bench_prior_distill.py --quick --out bench_results_quick

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info

# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint bench clean

$(BIN)/groklab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the exact CPU build first (a library must not pin its users' torch: pyproject says >=)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/groklab

venv: $(BIN)/groklab

# A short, real demonstration: x_plus_y mod 97, baseline vs layer-wise rates, 1500 steps.
# Layer-wise rates grok (val acc > 99 %) near step 800; the baseline has not yet (~1,800-2,700).
demo: venv
	$(BIN)/groklab run --task x_plus_y --lr baseline --lr layerwise --steps 1500 --out runs/demo
	$(BIN)/groklab results runs/demo

test: venv
	$(BIN)/ruff check src tests benchmarks docs/examples
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder  # two workers, a file each: tests/conftest.py orders them

bench: venv
	$(BIN)/groklab bench

clean:
	rm -rf $(VENV) runs

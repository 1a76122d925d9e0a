# courtledger: the two commands a new machine needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SEEDS  ?= 100000

.PHONY: run test sim lint typecheck bench clean faults bench-scale

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: start a local court consortium with a synthetic enforcement workload
run: $(STAMP)
	$(BIN)/courtledger demo

## test: install and run the whole suite
test: $(STAMP)
	$(BIN)/python -m pytest

## sim: a long sweep of the deterministic Raft simulator (SEEDS=N)
sim: $(STAMP)
	$(BIN)/python -m consensus.sim --seed 1 --seeds $(SEEDS)

lint: $(STAMP)
	$(BIN)/ruff check ledger consensus verifier api node tests bench

typecheck: $(STAMP)
	$(BIN)/mypy ledger consensus

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) run artifacts

## faults: the long fault-injection run (SEEDS=N)
faults: $(STAMP)
	$(BIN)/python -m tests.faults.run --seeds $(SEEDS)

## bench-scale: how cost grows with the log (MAX_SECONDS=3600)
bench-scale: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/scale.py --max-seconds $(or $(MAX_SECONDS),3600)

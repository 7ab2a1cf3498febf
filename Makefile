# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv if missing
# and installs what it needs (pip, with the pins in constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.telcosim-installed
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: demo test test-slow bench lint clean peers

# After installing, `telcosim warmup` compiles the numba kernels, so that the first run does not
# wait for them (docs/performance.md, "The first run").
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[dev,models]'
	$(BIN)/telcosim warmup
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/telcosim run --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_core.py

lint: $(STAMP)
	$(BIN)/ruff check .

# Independent peer generators for `telcosim benchmark` (SDV's GaussianCopula and CTGAN). SDV pins
# pandas < 3, which clashes with the main venv, so they live in a venv of their own that the
# benchmark calls through a subprocess (data exchanged as Parquet). Never needed by `make test`.
PEERS_VENV := benchmarks/.venv-peers
PEERS_STAMP := $(PEERS_VENV)/.peers-installed

$(PEERS_STAMP): benchmarks/peers-requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-r benchmarks/peers-requirements.txt
	touch $(PEERS_STAMP)

peers: $(PEERS_STAMP)

clean:
	rm -rf $(VENV) $(PEERS_VENV) runs .pytest_cache

# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch: on the project's CI machines this version installs from local disk,
# so CI never pulls a multi-GB CUDA build. GPU users: `make TORCH=torch install`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# Tests run in this many processes (pytest-xdist), each file whole in one of them (its
# module fixtures are built once) and each single-threaded: two processes that each ask
# torch for every core slow one another down ~10x on a 2-core machine.
TEST_WORKERS ?= 2

.PHONY: install install-dev demo test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e .

# Tests cover every world, so they need every world's extra (Push-T, Reacher, Cube), and the
# authors' library for the parity tests: its LeWM modules need only torch and einops, and its
# dependencies would replace the CPU torch with a CUDA build, hence --no-deps.
PEER ?= stable-worldmodel==0.1.1
install-dev: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,worlds,authors,parity]"
	$(BIN)/pip install -q --no-deps "$(PEER)"

demo: install
	$(BIN)/lewm demo

lint: install-dev
	$(BIN)/ruff check src tests bench

test: install-dev
	$(BIN)/ruff check src tests bench
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The development loop: no reinstall (run `make install-dev` once), slow tests deselected.
test-fast:
	@test -x $(BIN)/python || { echo "no $(VENV): run 'make install-dev' first"; exit 2; }
	$(BIN)/ruff check src tests bench
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

bench: install
	$(BIN)/python bench/collect.py
	$(BIN)/python bench/clip_throughput.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info

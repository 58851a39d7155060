# The two commands of the README: `make demo` (a real search) and `make test`.
# Each sets itself up: a virtual environment in .venv with the CPU build of torch.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-chaos install lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# ONNX -> torch for --model m.onnx (checked against ONNX Runtime before use); --no-deps:
	# it asks for torchvision, whose PyPI build is CUDA-linked and breaks the CPU torch
	$(BIN)/python -m pip install -q --no-deps onnx2torch==1.5.15
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/autoaccel search --workload minilm --space quick --budget 10

# every core; a module's tests stay on one worker, so its fixtures (a trained teacher, a
# finished search, the PostgreSQL services) are built once; the longest modules are handed
# out first (tests/conftest.py orders them; xdist's reordering would put them last)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --durations=15 \
		-m "not chaos"

# the faults benchmarks/chaos.py injects on every run (kill -9, a database or tracking server
# going away, a store killed while it is created), each as one test: before a release
test-chaos: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m chaos

lint: $(STAMP)
	$(BIN)/ruff check autoaccel tests benchmarks
	$(BIN)/ruff format --check autoaccel tests benchmarks

clean:
	rm -rf $(VENV) runs/optuna.db runs/mlflow.db runs/mlartifacts runs/cache

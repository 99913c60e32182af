# One command sets everything up and runs the main job; one runs the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench schema

# torch first, on its own (the CPU/CUDA build the machine's package index serves), then netspec with
# every other dependency at the exact versions of constraints.txt (pyproject.toml has lower bounds)
$(BIN)/netspec: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(BIN)/netspec

setup: $(BIN)/netspec

demo: setup
	$(BIN)/netspec zoo
	$(BIN)/netspec report specs/resnet50_d.yaml --depth 1

test: setup
	$(BIN)/ruff check netspec tests cli.py hubconf.py tools
	$(BIN)/ruff format --check netspec tests cli.py hubconf.py tools
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check --fix netspec tests cli.py hubconf.py tools
	$(BIN)/ruff format netspec tests cli.py hubconf.py tools

# after changing the spec or recipe models: the schema zoo specs name, and the copy the wheel ships
schema: setup
	$(BIN)/netspec schema -o netspec.schema.json
	$(BIN)/netspec schema -o netspec/data/netspec.schema.json

# One command sets everything up and runs the main job; one runs the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench

$(BIN)/netspec: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[test]"
	touch $(BIN)/netspec

setup: $(BIN)/netspec

demo: setup
	$(BIN)/netspec zoo
	$(BIN)/netspec report specs/resnet50_d.yaml --depth 1

test: setup
	$(BIN)/ruff check netspec tests cli.py
	$(BIN)/ruff format --check netspec tests cli.py
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check --fix netspec tests cli.py
	$(BIN)/ruff format netspec tests cli.py

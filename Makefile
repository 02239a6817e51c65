# Two entry points, each makes its own virtual environment (.venv) on first use:
#   make demo   set up and run the main job on the built-in synthetic default
#   make test   set up (with the test and interop extras) and run ruff + the test suite
PYTHON ?= python3
VENV ?= .venv
# torch and torchaudio are pinned together: torchaudio's compiled library must match torch.
TORCH_SPEC ?= torch==2.14.1 torchaudio==2.11.0
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.py
	$(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -e ".[test,interop]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m hear_vec.demo

test: $(VENV)/.installed-test
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/python -m ruff check .

clean:
	rm -rf $(VENV) runs demo_out

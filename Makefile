# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Each sets up ./.venv on its own (pip takes torch 2.14.1 / torchvision 0.29.1 from constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TILE := examples/rgbn_5m_utm18n.tif
QUESTION := Is there a water area?

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -c constraints.txt -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/graft-vqa ask $(TILE) "$(QUESTION)" --allow-untrained --show-program

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(STAMP)
	for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) test-artifacts .pytest_cache

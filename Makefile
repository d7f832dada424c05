# mailchannel: `make run` to use it, `make test` to test it.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: run test install migrate bench lint clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed

migrate: install
	$(BIN)/alembic upgrade head

run: migrate
	$(BIN)/python -m webapp.run

test: $(VENV)/.test-installed
	./scripts/test-deps.sh
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(VENV)/.test-installed
	./scripts/test-deps.sh
	$(BIN)/python -m bench.fetch $(BENCH_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check webapp worker tests bench
	$(BIN)/ruff format --check webapp worker tests bench

clean:
	rm -rf $(VENV) *.egg-info

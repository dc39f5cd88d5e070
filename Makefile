# The two commands: `make run` (set up and start everything, no external service) and `make test`.
PYTHON ?= python3
PORT   ?= 8000
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint format migrate bench clean simulate

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## Start web (127.0.0.1:$(PORT), default 8000) + Celery worker with embedded beat on SQLite and a filesystem broker.
run: install
	@PORT=$(PORT) bash bin/dev-run

## The whole suite. SQLite by default; set DATABASE_URL/REDIS_URL to run it on Postgres and Redis.
test: install
	$(BIN)/pytest

## The books simulation, long: `make simulate SEED=7 STEPS=200 EXAMPLES=100` (billing_audit after every step).
SEED     ?= 1
STEPS    ?= 200
EXAMPLES ?= 100
simulate: install
	SIM_SEED=$(SEED) SIM_STEPS=$(STEPS) SIM_EXAMPLES=$(EXAMPLES) $(BIN)/pytest payments/tests/test_simulation.py -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: install
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate --noinput

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis

# `make demo` and `make test` set everything up on a machine with only Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/embeddinghub demo

# Both modes: as the embedded server's superuser, and as a non-superuser owning its
# database (the managed-Postgres set-up, see tests/conftest.py). The owner pass leaves out
# what does not depend on the mode: tests/ha (its own Patroni cluster, as its superuser) and
# the embedded-server tests (their own servers in private homes, as their superuser).
# With $EMBEDDINGHUB_TEST_DSN the suite runs once, as whoever that DSN names.
test: $(STAMP)
ifdef EMBEDDINGHUB_TEST_DSN
	$(BIN)/python -m pytest -q
else
	EMBEDDINGHUB_TEST_MODE=superuser $(BIN)/python -m pytest -q
	EMBEDDINGHUB_TEST_MODE=owner $(BIN)/python -m pytest -q --ignore=tests/ha \
		--ignore=tests/test_server_faults.py --ignore=tests/test_embedded.py
endif

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check embeddinghub tests benchmarks migrations examples deploy
	$(BIN)/mypy --strict embeddinghub
	$(BIN)/python -m pytest -q tests/test_layers.py

clean:
	rm -rf $(VENV) .pytest_cache build dist

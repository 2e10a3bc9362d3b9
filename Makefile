# `make run`: set up (first time) and run the whole SSD experiment on the embedded default.
# `make test`: set up (first time) and run the test suite.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test bench clean

setup:
	bash scripts/bootstrap.sh

run: setup
	$(BIN)/ssd run $(ARGS)

test: setup
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf runs multirun outputs .pytest_cache

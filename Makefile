# invproto: the two commands of the README, plus their parts.
#   make quickstart   create .venv if needed, train + evaluate a small model, print its metrics
#   make test         create .venv if needed (and the demo's test browser), run the whole test suite (what CI runs)
#   make lint         ruff (ruff.toml): lint and import order, must be clean (CI runs it first)
#   make test-fast    create .venv if needed, run the unit tier only: every test not marked `slow` (pytest.ini),
#                     i.e. no real edflow/torchrun/browser subprocesses; under 2 minutes on an idle 2-core machine
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= $(abspath ../shared/data)

.PHONY: install quickstart lint test test-fast

$(VENV)/.installed: setup.py tools/install.sh
	bash tools/install.sh $(VENV)
	touch $@

install: $(VENV)/.installed

quickstart: install
	$(VENV)/bin/edflow -b configs/quickstart.yaml -t -n quickstart
	$(VENV)/bin/edflow -p "$$(ls -d logs/*_quickstart | tail -n 1)" --datasets/validation invproto.data.SpritesTest
	@echo; echo "scores of $$(ls -d logs/*_quickstart | tail -n 1):"; cat "$$(ls -d logs/*_quickstart | tail -n 1)/results/scores.yaml"

test: install
	bash tools/install_browser.sh   # Debian's chromium + chromedriver for tests/test_demo_browser.py
	INVPROTO_DATA=$${INVPROTO_DATA:-$(DATA)} WANDB_MODE=offline $(PY) -m pytest -q --durations=20 tests

test-fast: install
	INVPROTO_DATA=$${INVPROTO_DATA:-$(DATA)} WANDB_MODE=offline $(PY) -m pytest -q --durations=20 -m "not slow" tests

lint: install
	$(VENV)/bin/ruff check .

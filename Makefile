# invproto: the two commands of the README, plus their parts.
#   make quickstart   create .venv if needed, train + evaluate a small model, print its metrics
#   make test         create .venv if needed (and the demo's test browser), run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= $(abspath ../shared/data)

.PHONY: install quickstart test

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

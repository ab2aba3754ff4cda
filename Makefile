# Two commands on a fresh machine (Debian, Python 3): `make demo` and `make test`. Each sets up on
# first use what it needs and skips what is already done: the venv (installed into again when a
# requirements file changes) and the Debian packages (haproxy, dataset-fashion-mnist; apt-get as root or via sudo).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := haproxy dataset-fashion-mnist

.PHONY: demo test quick apt

demo: $(STAMP)
	$(PY) edge_api.py -t efficient_net --local-cloud --bandwidth wifi --edge-slowdown 10 --image china.jpg

# What CI runs (.ci/run): lint, types, then the whole suite.
test: $(STAMP) apt
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

# The inner loop: the quick part of the suite (about a minute and a half here).
quick: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The venv from the pinned requirements; pip takes torch from local disk on our machines.
$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	@touch $@

# Debian packages some features and tests need; where apt is missing, say so and go on (those
# tests skip, saying why).
apt:
	@missing=""; for pkg in $(APT_PACKAGES); do \
	  dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "apt-get not found: install$$missing yourself (README, 'Without apt or make'); their tests will skip"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else \
	  echo "not root and no sudo: install$$missing yourself; their tests will skip"; exit 0; fi; \
	echo "installing Debian packages:$$missing"; \
	($$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing) >/dev/null \
	  || echo "could not install$$missing: their tests will skip"

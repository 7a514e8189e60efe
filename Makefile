# ccfo — make demo / make test set up everything they need on a fresh Debian 12 machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the tests and the lab use (installed only when missing and when run as root);
# prometheus provides promtool, which checks both /metrics endpoints and config/prometheus/.
DEB_PKGS ?= sip-tester snmp snmptrapd snmpd smitools chromium systemd strace prometheus kamailio etcd-server etcd-client

.PHONY: demo test test-slow deps venv lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

deps:
	@bash scripts/install-debian-deps.sh $(DEB_PKGS)

demo: venv deps
	$(VENV)/bin/ccfo demo --config config --dir .lab

test: venv deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The long runs (the whole drill library on the live lab, the full fault campaign); CI runs them too.
test-slow: venv deps
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: venv deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

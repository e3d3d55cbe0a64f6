# `make serve` and `make test` do all set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
HUB := $(VENV)/bin/hub
PORT ?= 8866
MODULE ?= clas_system
HUB_MODULES := $(wildcard hubmodules/*)

.PHONY: install hub-install serve test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	$(PY) -m clas_system.models prepare
	touch $@

hub-install: install
	for m in $(HUB_MODULES); do $(HUB) install $$m || exit 1; done

serve: hub-install
	$(HUB) serving start -m $(MODULE) -p $(PORT)

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) *.egg-info

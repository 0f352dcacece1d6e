# Spike: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.spike-installed
WORKERS ?= 2
NENGO_SUITE_JOBS ?= 2

.PHONY: help install run test test-spike test-nengo docs bench bench-deps clean host-test-deps

help:
	@echo "make run    - create $(VENV), install Spike, run the matrix multiplication example on $(WORKERS) local workers"
	@echo "make test   - Spike's own tests, nengo's test suite against spike.Simulator (2 workers), the docs"
	@echo "make docs   - build the documentation into docs/_build/html (warnings are errors)"
	@echo "make bench  - time Spike against nengo.Simulator on the benchmark models (bench/results/)"
	@echo "make clean  - remove $(VENV) and outputs"

# everything optional too (compiled workers, SSH, plots, tests, docs: the "all" extra)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/spike run examples/matrix_multiplication.py --workers $(WORKERS) --time 1.0 \
		--out matrix_multiplication.npz --plot matrix_multiplication.png --placement

test: test-spike test-nengo docs

# compiled code from the tests stays in the checkout (make clean removes it)
export SPIKE_CACHE_DIR ?= $(CURDIR)/.cache/spike

test-spike: $(STAMP) host-test-deps
	$(BIN)/python -m pytest tests -q -n 2

# the inner loop: Spike's tests not marked slow (under 2 minutes on 2 cores)
.PHONY: test-fast
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -q -n 2 -m "not slow"

# tests/test_netns.py makes test hosts from network namespaces, each running Debian's
# sshd. As root with apt-get, install openssh-server if it is missing (the package does
# not start a system sshd where no init system runs); elsewhere, or if it cannot be
# installed, nothing fails: those tests skip and say why.
host-test-deps:
	@if [ "$$(id -u)" = 0 ] && [ ! -x /usr/sbin/sshd ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends openssh-server >/dev/null) \
		|| echo "host-test-deps: could not install openssh-server; namespace tests will skip"; \
	fi

# nengo's own suite, with spike.Simulator forced to 2 workers (see tests/nengo-suite.ini).
# The rootdir is nengo's site-packages folder, so test ids (and the seeds pytest-rng
# derives from them) are nengo's own: "nengo/tests/test_x.py::test_y".
SITE_PACKAGES = $(shell $(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" 2>/dev/null)
test-nengo: $(STAMP)
	cd $(SITE_PACKAGES) && SPIKE_TEST_WORKERS=2 $(CURDIR)/$(BIN)/python -m pytest \
		-c $(CURDIR)/tests/nengo-suite.ini --rootdir . --pyargs nengo \
		-n $(NENGO_SUITE_JOBS) -q -p no:cacheprovider

# Sphinx with numpydoc; -W --keep-going: every warning is reported, and fails the build.
# The configuration table, the command-line help and the benchmarks page are made from
# spike.config, the parsers and bench/results/ (docs/_ext/spike_docs.py).
docs: $(STAMP)
	$(BIN)/python -m sphinx -b html -W --keep-going -q docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

bench: $(STAMP) bench-deps
	$(BIN)/python -m bench.run

# nengo-ocl needs an OpenCL driver; on a CPU, Debian's pocl. As root with apt-get,
# install it if it is missing; elsewhere, or if it cannot be installed, nothing fails:
# the bench says why nengo-ocl did not run.
bench-deps:
	@if [ "$$(id -u)" = 0 ] && [ ! -e /etc/OpenCL/vendors/pocl.icd ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends pocl-opencl-icd >/dev/null) \
		|| echo "bench-deps: could not install pocl-opencl-icd; nengo-ocl will not run"; \
	fi

clean:
	rm -rf $(VENV) *.npz *.png build *.egg-info .cache docs/_build docs/api/generated

# Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# A twin of SageMaker's scikit-learn training container (Python 3.12, its library versions and
# the training toolkit) for the test that runs train.py through the toolkit's own runner.
CONTAINER_VENV := .venv-container
CONTAINER_STAMP := $(CONTAINER_VENV)/.installed
CONTAINER_REQUIREMENTS := tests/infra/sklearn_container/requirements.txt training_jobs/requirements.txt
CONTAINER_PYTHON ?= $(firstword $(wildcard $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/3.12*/bin/python3.12) \
	$(shell python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null))

# No phoning home, from any tool, in any target.
export ORT_DISABLE_TELEMETRY := 1
export CDK_DISABLE_CLI_TELEMETRY := true
export DO_NOT_TRACK := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export AWS_EC2_METADATA_DISABLED := true

.PHONY: help install container demo test lint typecheck unit bench clean arm64-sysroot

help:
	@echo "make demo   # train, quantize, serve and call the model locally (installs into .venv)"
	@echo "make test   # install everything and run lint, types and every test tier"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,infra,dev]'
	@# The wheel ships onnxkit only; the runtimes the CLI runs locally (functions/, training_jobs/)
	@# and the CDK app (infra/) are this checkout's top-level folders, so put it on the venv's path.
	$(PY) -c "import pathlib, site; pathlib.Path(site.getsitepackages()[0], 'onnxkit-checkout.pth').write_text('$(CURDIR)\n')"
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP) $(NODE_STAMP)

$(CONTAINER_STAMP): $(CONTAINER_REQUIREMENTS)
	@if [ -z "$(CONTAINER_PYTHON)" ]; then \
		echo "no Python 3.12 here: the SageMaker toolkit test will be skipped"; exit 0; fi; \
	set -e; test -x $(CONTAINER_VENV)/bin/python || $(CONTAINER_PYTHON) -m venv $(CONTAINER_VENV); \
	$(CONTAINER_VENV)/bin/python -m pip install --quiet --upgrade pip; \
	$(CONTAINER_VENV)/bin/python -m pip install --quiet $(addprefix -r ,$(CONTAINER_REQUIREMENTS)); \
	touch $@

container: $(CONTAINER_STAMP)

demo: $(STAMP)
	$(VENV)/bin/onnxkit demo

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(PY) -m mypy onnxkit training_jobs functions infra benchmarks

test: install container arm64-sysroot lint typecheck
	$(PY) -m pytest -n 2 --dist loadgroup

# Debian's arm64 Python under qemu-user, for the arm64 bundle check in tests/e2e/test_bundle.py.
# Needs root for apt (installs qemu-user-static, downloads ~16 MB; seconds); where that is not
# possible the check is skipped and says why.
ARM64_SYSROOT := .cache/arm64-sysroot
ARM64_STAMP := $(ARM64_SYSROOT)/.installed

$(ARM64_STAMP): tests/support/arm64_sysroot.sh
	@if tests/support/arm64_sysroot.sh $(ARM64_SYSROOT); then touch $@; else \
		echo "no arm64 sysroot here (needs root and apt): the arm64 bundle check will be skipped"; fi

arm64-sysroot: $(ARM64_STAMP)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(CONTAINER_VENV) node_modules cdk.out build .pytest_cache .mypy_cache .ruff_cache

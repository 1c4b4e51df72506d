# Two commands do all the set-up on a fresh machine: `make study` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STUDY  ?= studies/fashion_mnist.yaml
WORKDIR ?= .
MODEL  ?= fashion_mnist-student
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: study test bench data postgres ui mlflow-ui dashboard serve clean

# The pinned dependencies, then the harness itself (editable, without touching them): `.venv/bin/harness`
# and `.venv/bin/python -m harness` work from any folder, on this checkout's code.
$(VENV)/.installed: requirements.txt pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

# Fashion-MNIST comes from Debian's package when there is no internet.
/usr/share/datasets/fashion-mnist:
	@if command -v apt-get >/dev/null; then \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist; \
	else \
	  echo "Fashion-MNIST is missing: install Debian's dataset-fashion-mnist package" \
	       "(apt-get install dataset-fashion-mnist) or run where TFDS can download it." >&2; exit 1; \
	fi

data: $(VENV)/.installed /usr/share/datasets/fashion-mnist
	$(PY) -m harness data

# PostgreSQL binaries for the multi-machine tests (the tests start their own server).
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null; then \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql; \
	else echo "postgresql is not installed; its tests will be skipped" >&2; fi

study: data
	$(PY) -m harness study $(STUDY)

test: data postgres
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder tests

bench: data
	$(PY) -m harness bench --json bench.json

# The two browsers on a working directory's default stores (make ui WORKDIR=DIR for another).
# The venv's bin/ goes first on PATH: MLflow starts its server (uvicorn) by name.
# Lean: one worker and no job runner (MLflow's defaults, 4 uvicorn workers, its job runner and huey
# consumers, took about 3 GiB to browse one SQLite store).
ui: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(PY) -m mlflow ui \
	  --backend-store-uri sqlite:///$(abspath $(WORKDIR))/mlflow.db --host 127.0.0.1 --port 5000 --workers 1

mlflow-ui: ui

dashboard: $(VENV)/.installed
	$(VENV)/bin/optuna-dashboard sqlite:///$(abspath $(WORKDIR))/optuna.db --host 127.0.0.1 --port 8080

# The registered champion over REST (loopback), from the local environment.
serve: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" MLFLOW_TRACKING_URI=sqlite:///$(abspath $(WORKDIR))/mlflow.db \
	  $(PY) -m mlflow models serve -m models:/$(MODEL)@champion --env-manager local -h 127.0.0.1 -p 5001

clean:
	rm -rf $(VENV) .pytest_cache

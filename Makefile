# tala: two commands do all the set-up.
#   make demo   venv + pinned deps + ffmpeg, the whole workflow on the bundled demo, report.html
#   make test   the same set-up, then the test suite (unit, workflow, lint)
# Both are idempotent: a second run only re-checks the stamp and the Debian packages.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= $(shell nproc 2>/dev/null || echo 2)
STAMP := $(VENV)/.tala-installed
DEMO_CONFIG := config/demo.yaml
# Jobs call `python -m tala.<step>`: the venv's interpreter must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: all demo test bench setup system-deps test-deps profiles lint format demo-corpus demo-model demo-speechllm demo-moonshine vocoder-long lock clean

all: demo

setup: system-deps $(STAMP)

system-deps:
	@bash scripts/install-system-deps.sh

# The tests also need a single-node Slurm (tests/test_slurm.py) and headless Chromium (the report check).
test-deps:
	@bash scripts/install-system-deps.sh --test

# Links profiles/* into ~/.config/snakemake so that `snakemake --profile slurm-gpu` (a bare name)
# works from any folder. Idempotent; an existing non-link entry is kept.
profiles:
	@mkdir -p $(HOME)/.config/snakemake
	@for p in local slurm-gpu mps cuda; do dest=$(HOME)/.config/snakemake/$$p; \
	  if [ -e "$$dest" ] && [ ! -L "$$dest" ]; then echo "kept $$dest (not a link)"; \
	  else ln -sfn $(abspath profiles)/$$p "$$dest"; echo "$$dest -> profiles/$$p"; fi; done

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile $(DEMO_CONFIG) --show-failed-logs
	$(BIN)/snakemake --configfile $(DEMO_CONFIG) --report report.html
	@echo "report: $(abspath report.html)"

test: setup test-deps
	$(BIN)/python -m pytest

bench: setup
	@for b in tests/bench/bench_*.py; do echo "== $$b"; PYTHONPATH=scripts $(BIN)/python $$b || exit 1; done

lint: setup
	$(BIN)/snakemake --lint --configfile $(DEMO_CONFIG)
	$(BIN)/snakefmt --check workflow

format: setup
	$(BIN)/snakefmt workflow

# Regenerates resources/demo (needs espeak-ng; the outputs are committed).
demo-corpus: setup
	@command -v espeak-ng >/dev/null || { echo "demo-corpus needs espeak-ng (apt-get install espeak-ng)"; exit 1; }
	PYTHONPATH=scripts $(BIN)/python -m tala.demo.corpus --out resources/demo

# Retrains the demo's tiny MMS-style model into resources/demo/model (needs espeak-ng; seeded;
# ~30 min on 2 CPU cores; the result is committed). Checkpoints resume after a kill.
demo-model: setup
	@command -v espeak-ng >/dev/null || { echo "demo-model needs espeak-ng (apt-get install espeak-ng)"; exit 1; }
	PYTHONPATH=scripts $(BIN)/python -m tala.demo.model --out resources/demo/model

# Retrains the demo's speech-LLM stand-in into resources/demo/speechllm (needs espeak-ng and the demo
# CTC model, its teacher; seeded; ~5 h on 2 CPU cores). Resumes after a kill.
demo-speechllm: setup
	@command -v espeak-ng >/dev/null || { echo "demo-speechllm needs espeak-ng (apt-get install espeak-ng)"; exit 1; }
	PYTHONPATH=scripts $(BIN)/python -m tala.demo.speechllm --out resources/demo/speechllm

# Retrains the demo's Moonshine stand-in into resources/demo/moonshine (the speech-LLM recipe's data,
# teacher and tokenizer, made when missing; seeded; ~4 h on 2 CPU cores). Resumes after a kill.
demo-moonshine: setup
	@command -v espeak-ng >/dev/null || { echo "demo-moonshine needs espeak-ng (apt-get install espeak-ng)"; exit 1; }
	PYTHONPATH=scripts $(BIN)/python -m tala.demo.moonshine --out resources/demo/moonshine

# The vocoder's long recipe on the demo corpus (after `make demo`): the demo's generator settings
# trained 20x longer for one language (VOCODER_LANG, default samoan) into
# results/$(VOCODER_LANG)/vocoder_long/, then the same test as the demo's. ~60 min on 2 CPU cores;
# a rerun after a kill resumes from results/$(VOCODER_LANG)/vocoder_long.checkpoints/.
VOCODER_LANG ?= samoan
VOCODER_ADAPTER ?= smo
VOCODER_LONG := results/$(VOCODER_LANG)/vocoder_long
VOCODER_INPUTS = --units $$(ls results/$(VOCODER_LANG)/pitch/*.npy | sed 's,/pitch/,/units/,; s,\.npy$$,.json,') \
	  --pitch results/$(VOCODER_LANG)/pitch/*.npy --wavs $$(ls results/$(VOCODER_LANG)/pitch/*.npy \
	  | sed 's,/pitch/,/audio/,; s,\.npy$$,.wav,') --test results/$(VOCODER_LANG)/dataset/test.jsonl
vocoder-long: demo
	PYTHONPATH=scripts $(BIN)/python -m tala.vocoder.train $(VOCODER_LONG) $(VOCODER_INPUTS) \
	  --kmeans results/$(VOCODER_LANG)/units/kmeans.json --valid results/$(VOCODER_LANG)/dataset/valid.jsonl \
	  --epochs 80 --samples-per-epoch 800 --batch-size 8 --lr 1e-3 --mel-only-epochs 80 --save-every 5 \
	  --patience 0 --channels 128 --resblock-kernels 3 --harmonic-head 32 --no-progress
	PYTHONPATH=scripts $(BIN)/python -m tala.vocoder.evaluate $(VOCODER_LONG) $(VOCODER_LONG)/test $(VOCODER_INPUTS) \
	  --model resources/demo/model --lang $(VOCODER_ADAPTER) --report $(VOCODER_LONG)/test/vocoder.html

# Re-pins the whole dependency tree after a change to pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | sed -e 's/+cpu$$//' > requirements.lock

clean:
	rm -rf results logs benchmarks report.html .snakemake

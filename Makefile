# Two entry points on a fresh machine: `make demo` (the whole pipeline on the built-in synthetic city)
# and `make test`. Both create .venv with the project installed when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_RUNS := demo_adam_seed0 demo_tradam_seed0
DEMO_SEGMENTERS := checkpoints/segmenters/demo

.PHONY: demo test venv study

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch>=2.4,<3" "torchvision>=0.19,<1"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q

# Finished runs and segmenters are reused; interrupted ones are resumed.
demo: $(VENV)/.installed
	@for optim in adam tradam; do \
	  run=checkpoints/demo_$${optim}_seed0; \
	  if [ -f $$run/latest.pt ]; then resume=--resume; else resume=--overwrite; fi; \
	  $(PY) train.py --preset demo --optim $$optim $$resume || exit $$?; \
	done
	@for arch in fcn8s deeplabv3plus_xception71; do \
	  out=$(DEMO_SEGMENTERS)/$$arch.pt; \
	  if [ -f $$out ]; then echo "segmenter $$arch: reusing $$out"; continue; fi; \
	  if [ -f $(DEMO_SEGMENTERS)/$$arch.resume.pt ]; then resume=--resume; else resume=; fi; \
	  $(PY) -m eval.train_segmenter --preset demo --arch $$arch --out $$out $$resume || exit $$?; \
	done
	$(PY) evaluate.py --runs $(DEMO_RUNS) --segmenter-dir $(DEMO_SEGMENTERS) --out results/demo

# The seeds study (eval/study.py): Adam, TRAdam and its controls over 3 seeds; writes docs/study/.
study: $(VENV)/.installed
	$(PY) -m eval.study

# Two entry points on a fresh machine: `make demo` (the whole pipeline on the built-in synthetic city)
# and `make test`. Both create .venv with the project installed when it is missing.
# `make verify-dpc` checks our DPC Xception-71 port against DeepLab's TensorFlow graph in a separate
# environment (.venv-verify-dpc, TensorFlow CPU); DeepLab's sources come from DEEPLAB_RESEARCH.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-slow venv study scorers verify-dpc

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch>=2.4,<3" "torchvision>=0.19,<1"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

venv: $(VENV)/.installed

VERIFY_DPC_VENV := .venv-verify-dpc
# tensorflow/models research folder (deeplab/ and slim/); empty: tools/verify_dpc.py's default,
# ../shared/third_party/tensorflow-models/research
DEEPLAB_RESEARCH ?=
VERIFY_DPC_ARGS ?=

$(VERIFY_DPC_VENV)/.installed:
	test -x $(VERIFY_DPC_VENV)/bin/python || $(PYTHON) -m venv $(VERIFY_DPC_VENV)
	$(VERIFY_DPC_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VERIFY_DPC_VENV)/bin/python -m pip install --quiet "tensorflow-cpu==2.21.*" "tf-slim==1.1.*" "tf_keras==2.21.*"
	touch $@

# Never part of `make test`: it needs TensorFlow and takes ~10-20 minutes on 2 CPU cores.
verify-dpc: $(VENV)/.installed $(VERIFY_DPC_VENV)/.installed
	$(VERIFY_DPC_VENV)/bin/python tools/verify_dpc.py --project-python $(PY) \
	  $(if $(DEEPLAB_RESEARCH),--research $(DEEPLAB_RESEARCH)) $(VERIFY_DPC_ARGS)

# The tests marked slow (torchrun over gloo, torch.compile, the whole pipeline and study through their commands,
# about 3 minutes on 2 cores) run in `make test-slow`; CI runs both.
test: $(VENV)/.installed
	$(PY) -m pytest -q -n auto -m "not slow" --durations=15

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -n auto -m slow --durations=15

# Finished runs are reused; interrupted ones are resumed. The two runs train side by side (JOBS at once,
# default: the cores; THREADS each, default 1), then evaluate.py scores them with the shipped segmenters. FID/KID
# need torch-fidelity's InceptionV3 file: cached, downloadable or INCEPTION_WEIGHTS=PATH; else one line says
# they were skipped.
JOBS ?=
THREADS ?= 1
INCEPTION_WEIGHTS ?=
demo: $(VENV)/.installed
	$(PY) -m experiments.demo $(if $(JOBS),--jobs $(JOBS)) --threads $(THREADS) \
	  $(if $(INCEPTION_WEIGHTS),--inception-weights $(INCEPTION_WEIGHTS))

# The demo's two segmenters, trained again into checkpoints/segmenters/demo/ (the shipped files make demo and
# make study score with; neither trains them). Says how long it took.
scorers: $(VENV)/.installed
	$(PY) -m experiments.scorers $(if $(JOBS),--jobs $(JOBS)) --threads $(THREADS)

# The seeds study (experiments/study/): Adam, TRAdam and its controls over 8 seeds, JOBS runs at once; writes
# docs/study/. A run with a record in docs/study/runs/ of the same key and scorers is not trained again.
study: $(VENV)/.installed
	$(PY) -m experiments.study $(if $(JOBS),--jobs $(JOBS)) --threads $(THREADS)

# The two set-up commands of README.md. Each creates the virtual environment it needs
# from the project's own pinned files, so a fresh machine needs nothing installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_WORKERS ?= 2

.PHONY: demo test bench saved-models clean-venv

# The demo needs the package alone; the tests, notebooks and benchmarks add their extras on top (JAX, scipy, ...).
$(VENV)/.installed-main: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-main
	$(PY) -m pip install --quiet -e ".[test,notebooks,bench]"
	touch $@

## The main job: the keras-tx demo (see README).
demo: $(VENV)/.installed-main
	$(VENV)/bin/keras-tx demo

## The test suite (what .ci/run runs).
test: $(VENV)/.installed
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=15 tests

## Side-by-side benchmarks; results go to benchmarks/RESULTS.md by hand, with the command.
bench: $(VENV)/.installed
	$(PY) benchmarks/layers.py

## Retrain the demo's models in saved_models/ (hours on 2 CPU cores; each writes the command into metadata.json).
DATA ?= ../shared/datasets
KT := $(VENV)/bin/keras-tx
saved-models: $(VENV)/.installed
	$(KT) train gpt --text-file $(DATA)/tiny_shakespeare/input.txt --num-layers 4 --num-heads 4 --hidden-dim 256 \
		--intermediate-dim 1024 --context 128 --batch-size 64 --steps 640 --eval-interval 80 --eval-batches 12 \
		--dropout 0.0 --learning-rate 2e-3 --min-learning-rate 1e-4 --warmup-steps 80 --jit-compile on \
		--no-tensorboard --verbose 2 --out saved_models/gpt_shakespeare --force
	$(KT) train bert --data-dir $(DATA)/sst2 --pack --num-layers 4 --num-heads 4 --hidden-dim 128 \
		--intermediate-dim 512 --sequence-length 64 --vocabulary-size 8000 --batch-size 128 --steps 1200 \
		--eval-interval 100 --learning-rate 1e-3 --min-learning-rate 1e-4 --warmup-steps 120 --jit-compile on \
		--no-tensorboard --verbose 2 --out saved_models/bert_mlm --force
	$(KT) train sentiment --data-dir $(DATA)/sst2 --init-from saved_models/bert_mlm --sequence-length 48 \
		--batch-size 32 --steps 1200 --eval-interval 300 --learning-rate 3e-4 --no-tensorboard --verbose 2 \
		--out saved_models/sentiment_sst2 --force
	$(KT) train resnet --data-dir $(DATA)/fashion_mnist --width 16 --blocks-per-stage 2 2 2 2 --epochs 10 --flip \
		--no-tensorboard --verbose 2 --out saved_models/resnet_fashion_mnist --force
	$(KT) train vit --data-dir $(DATA)/fashion_mnist --patch-size 7 --num-layers 6 --num-heads 4 --hidden-dim 128 \
		--mlp-dim 256 --epochs 10 --flip --no-tensorboard --verbose 2 --out saved_models/vit_fashion_mnist --force
	$(KT) train igpt --data-dir $(DATA)/fashion_mnist --train-size 20000 --test-size 2000 --num-layers 2 \
		--hidden-dim 64 --num-heads 2 --epochs 3 --jit-compile on --no-tensorboard --verbose 2 \
		--out saved_models/igpt_fashion_mnist --force
	$(KT) train transformer --data-dir $(DATA)/multi30k --num-layers 2 --hidden-dim 128 --intermediate-dim 512 \
		--epochs 8 --learning-rate 1e-3 --warmup-steps 300 --jit-compile on --no-tensorboard --verbose 2 \
		--out saved_models/translation_de_en --force
	rm -f saved_models/*/best.weights.h5

clean-venv:
	rm -rf $(VENV)

# Training (sw/train.py, scripts/bench_train.py). See docs/training.md.
.PHONY: train-demo bench-train bench-train-quick

TRAIN_OUT ?= runs/demo
BENCH_TRAIN_ARGS ?=

train-demo: install
	nice $(PY) -m sw.train --arch vit-fmnist --dataset fashion-mnist --schedule progressive --out $(TRAIN_OUT)

# The ablation at equal budget (progressive/direct x channel/layer); writes runs/bench_train.json
# and the "## Training" section of docs/benchmarks.md. Add BENCH_TRAIN_ARGS=--quick for a reduced budget.
bench-train: install
	nice $(PY) scripts/bench_train.py $(BENCH_TRAIN_ARGS)

bench-train-quick: install
	nice $(PY) scripts/bench_train.py --quick $(BENCH_TRAIN_ARGS)

# make demo: train the demo model briefly, pack it, run it on the simulated ULX3S (owner:
# boards/runtime).  DEMO_STAGE_EPOCHS, DEMO_TRAIN_SUBSET, DEMO_IMAGES, DEMO_BOARD override the
# defaults; the 12F is the default board because its simulator is the one the tests build.
DEMO_DIR    ?= runs/demo
DEMO_BOARD  ?= ulx3s-12f
DEMO_IMAGES ?= 8
DEMO_STAGE_EPOCHS ?= 1,1,1
DEMO_TRAIN_SUBSET ?= 10000
DEMO_TEST_SUBSET  ?= 2000
.PHONY: demo

demo: install
	nice $(PY) -m sw.train --arch vit-fmnist --dataset fashion-mnist --schedule progressive \
	    --stage-epochs $(DEMO_STAGE_EPOCHS) --train-subset $(DEMO_TRAIN_SUBSET) \
	    --test-subset $(DEMO_TEST_SUBSET) --out $(DEMO_DIR)
	$(PY) -m sw.pack $(DEMO_DIR)/ternary.pt -o $(DEMO_DIR)/model.tvt
	$(PY) -m sw.deploy --board $(DEMO_BOARD) --port sim $(DEMO_DIR)/model.tvt \
	    --dataset fashion-mnist --images $(DEMO_IMAGES) --json $(DEMO_DIR)/deploy.json

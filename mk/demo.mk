# make demo: train the demo model briefly, pack it, run it on the simulated ULX3S and print
# the bit-exact report. DEMO_STAGE_EPOCHS (fp,int8,ternary), DEMO_IMAGES, DEMO_BOARD override
# the defaults (about 3 minutes of training on an idle 2-core machine).
DEMO_DIR    ?= runs/demo
DEMO_BOARD  ?= ulx3s
DEMO_IMAGES ?= 20
DEMO_STAGE_EPOCHS ?= 3,1,2
.PHONY: demo

demo: install
	nice $(PY) -m sw.train --arch vit-fmnist --dataset fashion-mnist --schedule progressive \
	    --stage-epochs $(DEMO_STAGE_EPOCHS) --out $(DEMO_DIR)
	$(PY) -m sw.pack $(DEMO_DIR)/ternary.pt -o $(DEMO_DIR)/model.tvt
	$(PY) -m sw.ref $(DEMO_DIR)/model.tvt --dataset fashion-mnist --quiet --json $(DEMO_DIR)/ref.json
	$(PY) -m sw.deploy --board $(DEMO_BOARD) --port sim $(DEMO_DIR)/model.tvt \
	    --dataset fashion-mnist --images $(DEMO_IMAGES) --json $(DEMO_DIR)/deploy.json

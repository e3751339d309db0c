# Integer ops (sw/ref/ops.py) and the TFLite exporter (sw/export).
.PHONY: test-ops export-tflite
test-ops: install
	$(PY) -m pytest tests/test_ops.py tests/test_ops_litert.py tests/test_export.py -q

# make export-tflite TVT=model.tvt [TFLITE=model.tflite]: write the .tflite and check it in LiteRT
TFLITE ?= $(basename $(TVT)).tflite
export-tflite: install
	@[ -n "$(TVT)" ] || { echo "usage: make export-tflite TVT=model.tvt [TFLITE=out.tflite]"; exit 2; }
	$(PY) -m sw.export $(TVT) -o $(TFLITE) --check

# The .tvt file, sw.pack, the integer reference graph, sw.inspect (owner: ref).
.PHONY: test-ref bench-ref bench-size
test-ref: install
	$(PY) -m pytest tests/test_tvt.py tests/test_pack.py tests/test_ref_graph.py tests/test_ref_graph_cli.py -q

# make bench-ref [TVT=model.tvt]: images/s of sw.ref over the 10,000 Fashion-MNIST test images
bench-ref: install
	@mkdir -p build
	nice $(PY) scripts/bench_ref.py $(if $(TVT),--model $(TVT)) --json build/bench_ref.json

# make bench-size: packed sizes of fully ternary DeiT-S and Swin-S vs their budgets and a raw baseline
bench-size: install
	@mkdir -p build
	nice $(PY) scripts/bench_size.py --json build/bench_size.json

# Deploy: link efficiency and throughput of sw.deploy on the simulated ULX3S (owner: deploy).
# BENCH_DEPLOY_ARGS adds options, e.g. `make bench-deploy BENCH_DEPLOY_ARGS="--model m.tvt"`.
BENCH_DEPLOY_ARGS ?=
.PHONY: bench-deploy

bench-deploy: install
	nice $(PY) scripts/bench_deploy.py --json build/bench_deploy.json $(BENCH_DEPLOY_ARGS)

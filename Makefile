# Everything a fresh machine needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Local throwaway PostgreSQL for tests and benchmarks (scripts/pg.sh). The password is
# test-only, for a server bound to 127.0.0.1 that lives in .services/; set PG_PASSWORD to change it.
export PG_PORT ?= 54329
export PG_USER ?= indexer
export PG_DB ?= indexer_test
export PG_PASSWORD ?= indexer-test-only
export ENGINE_PORT ?= 9200
# The local search node (scripts/engine.sh): opensearch | elasticsearch (8.19) | elasticsearch9 (9.2, Java 21+).
ENGINE ?= opensearch
# `make test` runs every engine side by side (ports ENGINE_PORT, +1, +2); `make test ENGINE=x` runs only x.
ENGINES ?= $(if $(filter command line environment,$(origin ENGINE)),$(ENGINE),opensearch elasticsearch elasticsearch9)
ENGINE_NAME = $(if $(filter opensearch,$(ENGINE)),OpenSearch,Elasticsearch)

.PHONY: help venv demo test engine engine-stop cluster cluster-stop soak pg pg-stop prometheus prometheus-stop bench audit clean

help:
	@echo "make demo         set up, start a local search node, index 100,000 demo rows (ENGINE=opensearch|elasticsearch|elasticsearch9)"
	@echo "make test         lint, unit tests, then the engine tests on OpenSearch, Elasticsearch 8 and 9 side by side (starts and stops what it needs)"
	@echo "make engine       start the local node: ENGINE=opensearch (default) | elasticsearch | elasticsearch9, ENGINE_PORT=9200"
	@echo "make engine-stop  stop the local node (whichever is running; ENGINE=... for just that one)"
	@echo "make cluster      start a local multi-node cluster: ENGINE=..., NODES=3, ENGINE_PORT=9200 (docs/engines.md); cluster-stop stops it"
	@echo "make soak         the chaos soak: MINUTES=30 against PostgreSQL and a 3-node cluster; appends to SOAK.md (SEED=n replays)"
	@echo "make pg           start the local PostgreSQL server (pg-stop stops it)"
	@echo "make prometheus   start the local Prometheus server (PROM_PORT=9490; installs it; prometheus-stop stops it)"
	@echo "make audit        pip-audit (installed packages) + bandit (indexer/); non-zero on findings"
	@echo "make bench        the benchmark (OpenSearch and Elasticsearch 8); writes BENCHMARKS.md"

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo/sensors.db: demo/generate.py | venv
	$(BIN)/python demo/generate.py $@ --rows 100000

demo: venv demo/sensors.db engine
	INDEXER_URL=http://127.0.0.1:$(ENGINE_PORT) $(BIN)/indexer bootstrap
	INDEXER_URL=http://127.0.0.1:$(ENGINE_PORT) INDEXER_PROGRESS=1 $(BIN)/indexer reindex examples/sensors.toml
	@echo "documents in alias sensors: $$(curl -s http://127.0.0.1:$(ENGINE_PORT)/sensors/_count | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)["count"])')"
	@echo "one hit:"; curl -s 'http://127.0.0.1:$(ENGINE_PORT)/sensors/_search?size=1&q=site:KEYWORTH' \
	  | $(BIN)/python -c 'import json,sys; h=json.load(sys.stdin)["hits"]["hits"][0]; print(json.dumps({"_id": h["_id"], **h["_source"]}, indent=2))'
	@echo "$(ENGINE_NAME) keeps running on http://127.0.0.1:$(ENGINE_PORT); stop it with: make engine-stop"

test: venv
	ENGINES="$(ENGINES)" scripts/test-matrix.sh

audit: venv
	scripts/audit.sh $(VENV)

bench: venv
	ENGINE=opensearch scripts/with-services.sh sh -c '$(BIN)/python bench/run.py --sweep && $(BIN)/python bench/reconcile_bench.py --cli --append BENCHMARKS.md && $(BIN)/python bench/partitions_bench.py --append BENCHMARKS.md && $(BIN)/python bench/daemon_bench.py --append BENCHMARKS.md && $(BIN)/python bench/nested_bench.py --append BENCHMARKS.md && $(BIN)/python bench/nested_read_bench.py --append BENCHMARKS.md'

engine:
	ENGINE=$(ENGINE) scripts/engine.sh start

engine-stop:
	$(if $(filter command line environment,$(origin ENGINE)),ENGINE=$(ENGINE)) scripts/engine.sh stop

# A multi-node cluster of real nodes, one JVM each (scripts/cluster.sh: also kill/stop-node/start-node N).
NODES ?= 3
cluster:
	ENGINE=$(ENGINE) NODES=$(NODES) scripts/cluster.sh start

cluster-stop:
	ENGINE=$(ENGINE) NODES=$(NODES) scripts/cluster.sh stop

# The chaos soak (tests/soak): its own PostgreSQL and 3-node cluster, faults at random, an exact comparison at the end.
MINUTES ?= 30
soak: venv
	$(BIN)/python -m tests.soak.soak --minutes $(MINUTES) --engine $(ENGINE) $(if $(SEED),--seed $(SEED))

pg:
	scripts/pg.sh start

pg-stop:
	scripts/pg.sh stop

prometheus:
	scripts/prometheus.sh start

prometheus-stop:
	scripts/prometheus.sh stop

clean: engine-stop pg-stop
	rm -rf .services demo/sensors.db

# Seamline: the two set-up commands are `make demo` and `make test`; both install first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# The installer and the lock tool, pinned like everything else.
PIP_VERSION ?= 26.3
UV_VERSION ?= 0.13.9
# Two pytest-xdist workers, the e2e modules first (the longest unit); 0 runs the suite in one
# process. tests/conftest.py decides what stays together on one worker.
PYTEST_WORKERS ?= 2
# Stages in dvc.yaml call `python` and `dvc`: the project's venv comes first on the PATH.
export PATH := $(abspath $(BIN)):$(PATH)
# No outbound usage data from what make starts (Prefect's server analytics and client telemetry,
# MLflow's telemetry); a value already in the environment wins. pipelines/__init__.py does the same.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= true
export MLFLOW_DISABLE_TELEMETRY ?= true

.DEFAULT_GOAL := help
.PHONY: help install test lint bench demo demo-retrain base-data base lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

# The venv is rebuilt only when a lock or the project metadata changes. Every package comes from
# the two locks with its hash checked; the project itself builds with the locked setuptools.
$(STAMP): requirements.lock requirements-test.lock pyproject.toml
	@echo "==> installing the pinned dependency set into $(VENV) (first time: a few minutes)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock -r requirements-test.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "==> installed: $$(du -sh $(VENV) | cut -f1) in $(VENV)"

install: $(STAMP) ## Create .venv and install both locks (requirements.lock + requirements-test.lock), hashes checked

test: install ## Run the test suite (unit, integration, e2e)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

lint: install ## Check formatting and lint the whole tree (ruff, 120 columns; pyproject.toml [tool.ruff])
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

bench: demo ## Run every benchmark under bench/ (each prints ratios measured side by side)
	@set -e; for script in bench/[!_]*.py; do echo "==> $$script"; $(BIN)/python $$script; done

SHOP_DIR ?= data/demo_shop
SHOP_PORT ?= 8765

# The clock starts before the install, so the time printed at the end is the whole first run.
demo: ## Install, then run the weekly retrain flow on the embedded defaults and the demo shop
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory install && \
	$(BIN)/seamline params check && \
	$(BIN)/seamline demo-shop build --out $(SHOP_DIR) && \
	$(BIN)/seamline demo-shop sheet $(SHOP_DIR) && \
	$(BIN)/seamline annotations import $(SHOP_DIR)/annotations --out data/annotations && \
	$(MAKE) --no-print-directory demo-retrain && \
	echo "==> registered models:" && $(BIN)/seamline models list && \
	echo "==> the champions on two demo photos (a pair of jeans, a shirt):" && \
	$(BIN)/seamline predict $(SHOP_DIR)/site/img/SL00002/1.jpg $(SHOP_DIR)/site/img/SL00003/1.jpg && \
	echo "==> demo finished in $$(( ($$(date +%s) - start) / 60 )) min $$(( ($$(date +%s) - start) % 60 )) s (install included)"
	@echo "    Report: reports/retrain/latest.md (also a Prefect artifact). Shop: $(SHOP_DIR) (contact sheets in $(SHOP_DIR)/sheets)."
	@echo "    MLflow UI (runs, registry, aliases): $(BIN)/seamline mlflow-ui   → http://127.0.0.1:5000"
	@echo "    Search page and API (the catalogue the run indexed): $(BIN)/seamline serve   → http://127.0.0.1:8000/"
	@echo "    Tag any photo: $(BIN)/seamline predict PHOTO...   Promote or roll back: $(BIN)/seamline models --help"
	@echo "    Browse the shop: $(BIN)/seamline demo-shop serve $(SHOP_DIR) --port $(SHOP_PORT)"

# The weekly flow with the demo shop served on 127.0.0.1 for the crawl, stopped whatever the outcome.
demo-retrain:
	@set -e; $(BIN)/seamline demo-shop serve $(SHOP_DIR) --port $(SHOP_PORT) & server=$$!; \
	  trap "kill $$server 2>/dev/null" EXIT; \
	  for i in $$(seq 60); do $(BIN)/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$(SHOP_PORT)/')" 2>/dev/null && break; sleep 0.5; done; \
	  SEAMLINE_DEMO_SHOP_URL=http://127.0.0.1:$(SHOP_PORT) $(BIN)/seamline retrain

# The garment base the demo starts from (weights/, params `garment_base`), rebuilt from nothing in
# two steps. base-data: a demo shop of another seed (profile garment-base) crawled, validated,
# labelled by its titles, its detector trained, its crops cut twice (by the detector, as the demo's
# are, and by the shop's own annotations) in a scratch workspace with an MLflow store of its own;
# then every crop, and the real photos by garment type (BASE_PHOTOS), decoded into one pack.
# base: the base pretrained on that pack, here. The shipped base was trained from such a pack on a
# lent GPU, Keras on JAX, with profile garment-base-gpu (docs/base-weights.md says how).
BASE_WORKSPACE ?= .cache/garment-base
BASE_PORT ?= 8766
BASE_PARAMS ?= params.yaml
BASE_PROFILE ?= garment-base
BASE_PHOTOS ?= $(wildcard ../shared/real-photos/clothing-dataset-small/train)
BASE_PACK_ARGS ?=
BASE_OUT ?=
base-data: install ## The garment base's data from nothing: a shop of its own, its crops two ways, one pack
	@set -e; W=$(BASE_WORKSPACE); P="--params $(BASE_PARAMS) --profile garment-base"; \
	  mkdir -p $$W; export MLFLOW_TRACKING_URI=sqlite:///$$(cd $$W && pwd)/mlflow.db; \
	  $(BIN)/seamline demo-shop build $$P --out $$W/shop; \
	  $(BIN)/seamline annotations import $$W/shop/annotations --out $$W/annotations --no-dvc; \
	  $(BIN)/seamline demo-shop serve $$W/shop --port $(BASE_PORT) & server=$$!; \
	  trap "kill $$server 2>/dev/null" EXIT; \
	  for i in $$(seq 60); do $(BIN)/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$(BASE_PORT)/')" 2>/dev/null && break; sleep 0.5; done; \
	  SEAMLINE_DEMO_SHOP_URL=http://127.0.0.1:$(BASE_PORT) $(BIN)/python -m crawlers.run crawl demo $$P \
	    --data-root $$W/raw --reports-root $$W/reports/crawl; \
	  $(BIN)/python -m pipelines.stages.validate $$P --manifests $$W/raw --crawl-reports $$W/reports/crawl \
	    --out $$W/validated --docs $$W/reports/validation --summary $$W/reports/validation_summary.json; \
	  $(BIN)/python -m pipelines.stages.label $$P --manifest $$W/validated/manifest.parquet --out $$W/labels; \
	  $(BIN)/python -m pipelines.stages.detector $$P --annotations $$W/annotations --out $$W/detector \
	    --metrics $$W/reports/detector.json; \
	  for cut in garment-base:crops garment-base-annotation:crops-annotation; do \
	    $(BIN)/python -m pipelines.stages.crop --params $(BASE_PARAMS) --profile $${cut%%:*} --labels $$W/labels \
	      --manifest $$W/validated/manifest.parquet --images $$W/raw --detector $$W/detector \
	      --annotations $$W/annotations --out $$W/$${cut##*:} --summary $$W/reports/$${cut##*:}_summary.json; \
	  done; \
	  $(BIN)/seamline garment-base $$P --crops $$W/crops --crops $$W/crops-annotation --labels $$W/labels \
	    $(if $(BASE_PHOTOS),--photos $(BASE_PHOTOS)) --save-arrays $$W/pack.npz $(BASE_PACK_ARGS)

base: base-data ## Rebuild the garment base from nothing here (weights/; about an hour more on 2 cores)
	$(BIN)/seamline garment-base --params $(BASE_PARAMS) --profile $(BASE_PROFILE) \
	  --arrays $(BASE_WORKSPACE)/pack.npz $(if $(BASE_OUT),--out $(BASE_OUT))

# requirements.lock: production (what infra/Dockerfile installs); requirements-test.lock and
# requirements-gpu.lock: only what the `test` and `gpu` extras add (the GPU image's CUDA libraries),
# each resolved against requirements.lock so the shared versions agree. Pins
# already in a lock are kept: LOCK_ARGS=--upgrade (or --upgrade-package NAME) moves them.
# setuptools stays below 82, which removed pkg_resources (tensorboard and tensorflow_hub import it).
LOCK_ARGS ?=
UV_COMPILE = .lock-venv/bin/uv pip compile pyproject.toml --python-version 3.11 --python-platform linux \
	--generate-hashes --custom-compile-command "make lock" --quiet $(LOCK_ARGS)

lock: ## Re-resolve pyproject.toml into requirements.lock, -test.lock and -gpu.lock, with hashes
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet uv==$(UV_VERSION)
	echo 'setuptools<82' > .lock-venv/constraints.txt
	$(UV_COMPILE) -c .lock-venv/constraints.txt -o requirements.lock
	$(UV_COMPILE) --extra test -c requirements.lock -o requirements-test.lock \
	  $$(sed -n 's/^\([A-Za-z0-9._-]*\)==.*/--no-emit-package \1/p' requirements.lock)
	$(UV_COMPILE) --extra gpu -c requirements.lock -o requirements-gpu.lock \
	  $$(sed -n 's/^\([A-Za-z0-9._-]*\)==.*/--no-emit-package \1/p' requirements.lock)
	rm -rf .lock-venv

clean: ## Remove the venv and caches (data, models and mlflow/ stay)
	rm -rf $(VENV) .pytest_cache build *.egg-info

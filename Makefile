# Tollgate — the newcomer's index. `make help` lists the targets; docs/operating.md explains them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOLLGATE := $(BIN)/tollgate
# The Google provider's schema, from its prebuilt CDKTF bindings (hash-pinned): what `terraform validate` would
# check against, had the provider been downloadable. check-terraform and tests/test_terraform.py read it.
PROVIDER_SCHEMA := .tools/google-provider-schema.json

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.in requirements-dev.in constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found): install python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.in -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -c "from tollgate import treeshap, treewalk; treewalk.warm(); treeshap.warm()"   # compiled once
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install everything (pinned)

up: setup ## start the local cloud (emulators, functions, Cloud Run API) and print its URLs
	$(TOLLGATE) up

down: setup ## stop the local cloud, keeping its data
	$(TOLLGATE) down

clean: ## stop the local cloud and delete its data (.tollgate/)
	-@[ -x $(TOLLGATE) ] && $(TOLLGATE) down --wipe || rm -rf .tollgate

# MLFLOW=1: the local cloud also runs an MLflow tracking server and the demo ends with what it mirrored.
demo: setup $(if $(MLFLOW),mlflow) ## start the local cloud and replay the taxi data through the whole chain (MLFLOW=1: with MLflow)
	$(BIN)/python examples/demo.py $(if $(MLFLOW),--mlflow)

test: lint check-terraform mlflow ## lint, terraform checks, then unit, emulator and end-to-end tests (own emulators on free ports)
	$(BIN)/pytest

test-unit: setup $(PROVIDER_SCHEMA) ## only the unit tests: no emulator, no network, no download
	$(BIN)/pytest -m "not emulator and not e2e"

test-emulator: setup $(PROVIDER_SCHEMA) ## the tests that need the local cloud's emulators, without the whole chain
	$(BIN)/pytest -m "emulator and not e2e"

test-e2e: setup mlflow $(PROVIDER_SCHEMA) ## the end-to-end chains through the local cloud
	$(BIN)/pytest -m e2e

fuzz: setup ## more seeded mutations of model artifacts and data files than make test runs (FUZZ_CASES=10000, FUZZ_SEED=N)
	FUZZ_CASES=$(or $(FUZZ_CASES),10000) $(if $(FUZZ_SEED),FUZZ_SEED=$(FUZZ_SEED)) $(BIN)/pytest tests/test_fuzz.py -p no:cacheprovider

chaos: setup ## fault injection on a fresh local cloud: random SIGKILLs during bursts, invariants checked (SEEDS="1 2 3")
	$(BIN)/python -m tests.chaos --seeds $(or $(SEEDS),1 2 3) $(if $(DROPS),--drops $(DROPS))

lint: setup ## ruff (pyflakes, syntax errors, line length, sorted imports) on all Python code
	$(BIN)/ruff check shared functions services localcloud tests examples benchmarks   # rules: pyproject.toml

CHECKOV := .tools/checkov
MLFLOW_VENV := .tools/mlflow

$(MLFLOW_VENV)/.installed: localcloud/mlflow-server.txt
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/pip install --quiet -r localcloud/mlflow-server.txt
	@touch $@

mlflow: $(MLFLOW_VENV)/.installed ## install the MLflow tracking server (own venv) for `tollgate up --mlflow` and the tests

$(CHECKOV)/.installed: terraform/checkov-constraints.txt
	$(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/pip install --quiet checkov==3.3.30 -c terraform/checkov-constraints.txt
	@touch $@

$(PROVIDER_SCHEMA): terraform/provider-schema.txt tests/provider_schema.py | $(STAMP)
	rm -rf .tools/wheels
	$(BIN)/pip download --quiet --no-deps --require-hashes -r terraform/provider-schema.txt -d .tools/wheels
	$(BIN)/python tests/provider_schema.py build .tools/wheels/*.whl $@
	rm -rf .tools/wheels

check-terraform: $(CHECKOV)/.installed $(PROVIDER_SCHEMA) ## terraform/ against the provider schema, then checkov (zero failures)
	$(BIN)/python tests/provider_schema.py check $(PROVIDER_SCHEMA) terraform
	$(CHECKOV)/bin/checkov -d terraform --framework terraform --quiet --compact --skip-download

GE_VENV := .bench/ge

$(GE_VENV)/.installed: benchmarks/requirements-ge.in benchmarks/constraints-ge.txt
	$(PYTHON) -m venv $(GE_VENV)
	$(GE_VENV)/bin/pip install --quiet -r benchmarks/requirements-ge.in -c benchmarks/constraints-ge.txt
	@touch $@

bench: bench-validate bench-train bench-quality bench-memory bench-serve bench-scale bench-console ## every benchmark, numbers side by side with the tools we compare against

bench-validate: setup $(GE_VENV)/.installed ## validate a generated 1,000,000-row taxi file: tollgate vs Great Expectations
	$(BIN)/python benchmarks/validate.py $(if $(ROWS),--rows $(ROWS))

bench-scale: setup ## the data plane at volume: monitor tick over 18M predictions, drain, trainer, bootstrap, burst (data in .bench/)
	$(BIN)/python benchmarks/scale.py $(if $(RATE),--rate $(RATE)) $(if $(HISTORY),--history $(HISTORY))

bench-burst: setup ## 50 files for one dataset at once on a fresh local cloud: trainings run, seconds until all ended
	$(BIN)/python benchmarks/burst.py $(if $(FILES),--files $(FILES))

bench-console: setup ## console pages with 1,000 runs and 100 versions of a dataset: p50/p95 ms of overview and dataset
	$(BIN)/python benchmarks/console.py $(if $(RUNS),--runs $(RUNS))

FLAML_VENV := .bench/flaml

$(FLAML_VENV)/.installed: benchmarks/requirements-flaml.in benchmarks/constraints-flaml.txt
	$(PYTHON) -m venv $(FLAML_VENV)
	$(FLAML_VENV)/bin/pip install --quiet -r benchmarks/requirements-flaml.in -c benchmarks/constraints-flaml.txt
	@touch $@

bench-quality: setup $(FLAML_VENV)/.installed ## the newcomer path on 8 real tables vs hand-written HistGradientBoosting and FLAML
	$(BIN)/python benchmarks/quality.py $(if $(TABLES),--tables $(TABLES)) $(if $(FLAML_SECONDS),--flaml-seconds $(FLAML_SECONDS))

bench-memory: setup ## each estimator family at 1,000,000 rows x 30 features (3 categorical of 10,000 values) in a 2 GiB job: the plan, fit s, peak MiB
	$(BIN)/python benchmarks/memory.py $(if $(ROWS),--rows $(ROWS)) $(if $(FAMILIES),--families $(FAMILIES))

bench-train: setup ## training and evaluation time of each estimator on the full taxi data
	$(BIN)/python benchmarks/train.py

MLSERVER_VENV := .bench/mlserver

$(MLSERVER_VENV)/.installed: benchmarks/requirements-mlserver.in benchmarks/constraints-mlserver.txt
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install --quiet -r benchmarks/requirements-mlserver.in -c benchmarks/constraints-mlserver.txt
	@touch $@

wrk:
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } || \
	  { echo "wrk is required: sudo apt-get install wrk"; exit 1; }

bench-serve: setup wrk $(MLSERVER_VENV)/.installed ## predictor vs MLServer on the taxi model: req/s, rows/s, p50/p99, RSS, start-up
	$(BIN)/python benchmarks/serve.py $(if $(SECONDS_PER_RUN),--seconds $(SECONDS_PER_RUN))

reference: setup ## regenerate docs/reference/ (spec, CLI, client, predictor API) from the code
	$(BIN)/python docs/hooks.py

docs: setup reference ## build the documentation site into build/site (MkDocs, strict: a warning fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "site: build/site/index.html"

lock: setup ## refresh constraints.txt from requirements*.in
	$(BIN)/pip freeze --exclude-editable | sed '1i # Full pinned dependency set (pip freeze of requirements.in on Python 3.11). Refresh: make lock' > constraints.txt

REGION ?= us-central1
# Cloud Build runs terraform as this account, not the project's default build account (which new projects
# leave without roles). It creates and grants everything terraform/ declares, so it holds admin roles on
# exactly those services; only people allowed to act as it can deploy.
DEPLOYER = tollgate-deployer@$(PROJECT).iam.gserviceaccount.com
DEPLOYER_ROLES = roles/artifactregistry.admin roles/bigquery.admin roles/cloudfunctions.admin roles/cloudscheduler.admin \
  roles/compute.loadBalancerAdmin roles/iap.admin roles/datastore.owner roles/iam.serviceAccountAdmin roles/iam.serviceAccountUser roles/logging.logWriter \
  roles/pubsub.admin roles/resourcemanager.projectIamAdmin roles/run.admin roles/secretmanager.admin \
  roles/serviceusage.serviceUsageAdmin roles/storage.admin

# Your settings (reviewers, invokers, webhook, ...): this file, git-ignored, is carried into Cloud Build as
# deploy.auto.tfvars (.gcloudignore lets exactly that name through); without it terraform's defaults apply.
TFVARS ?= terraform/environments/production/terraform.tfvars
TF_DIR = terraform/environments/production
# The image tag and code_version: the commit. A tree with uncommitted changes is refused (ALLOW_DIRTY=1 deploys it
# tagged <commit>-dirty, so lineage never names a commit the code did not come from).
IMAGE_TAG = $(shell git rev-parse HEAD)$(if $(shell git status --porcelain --untracked-files=no),-dirty)

deploy: ## deploy to GCP: make deploy PROJECT=my-project [REGION=us-central1] [TFVARS=file] (Cloud Build: images + terraform apply)
	@[ -n "$(PROJECT)" ] || { echo "usage: make deploy PROJECT=my-project [REGION=us-central1] [TFVARS=my.tfvars]"; exit 2; }
	@command -v gcloud >/dev/null || { echo 'the gcloud CLI is required (then: gcloud auth login)'; exit 2; }
	@case "$(IMAGE_TAG)" in *-dirty) [ "$(ALLOW_DIRTY)" = 1 ] || { echo "uncommitted changes: commit them, or \
	  make deploy ... ALLOW_DIRTY=1 to deploy them tagged $(IMAGE_TAG)"; exit 2; };; esac
	@rm -f $(TF_DIR)/deploy.auto.tfvars
	@if [ -f "$(TFVARS)" ]; then cp "$(TFVARS)" $(TF_DIR)/deploy.auto.tfvars && echo "settings: $(TFVARS)"; \
	  else echo "no $(TFVARS): terraform's defaults apply (copy $(TF_DIR)/terraform.tfvars.example to set yours)"; fi
	gcloud services enable cloudbuild.googleapis.com storage.googleapis.com iam.googleapis.com \
	  cloudresourcemanager.googleapis.com --project $(PROJECT)
	gcloud storage buckets describe gs://$(PROJECT)-tfstate --project $(PROJECT) >/dev/null 2>&1 || \
	  gcloud storage buckets create gs://$(PROJECT)-tfstate --project $(PROJECT) --location $(REGION) \
	    --uniform-bucket-level-access --public-access-prevention
	gcloud storage buckets update gs://$(PROJECT)-tfstate --versioning
	gcloud iam service-accounts describe $(DEPLOYER) --project $(PROJECT) >/dev/null 2>&1 || \
	  gcloud iam service-accounts create tollgate-deployer --project $(PROJECT) \
	    --display-name "Tollgate deployer (Cloud Build runs terraform as this account)"
	for role in $(DEPLOYER_ROLES); do \
	  gcloud projects add-iam-policy-binding $(PROJECT) --member serviceAccount:$(DEPLOYER) --role $$role \
	    --condition None --quiet >/dev/null || exit 1; done
	gcloud builds submit --project $(PROJECT) --region $(REGION) --config cloudbuild.yaml \
	  --service-account projects/$(PROJECT)/serviceAccounts/$(DEPLOYER) \
	  --substitutions=_REGION=$(REGION),_TF_STATE_BUCKET=$(PROJECT)-tfstate,_IMAGE_TAG=$(IMAGE_TAG) . ; \
	  status=$$?; rm -f $(TF_DIR)/deploy.auto.tfvars; exit $$status

.PHONY: help setup up down clean demo test test-unit fuzz chaos lint reference docs lock bench bench-validate bench-train bench-quality bench-serve bench-scale bench-burst bench-console \
	wrk deploy \
	check-terraform mlflow

# ToggleMaster Deploy — task runner. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The local demo's topology: single (one web host) or ha (make demo TOPOLOGY=ha: HAProxy in
# front of two web hosts, inventories/local-ha added to the local inventory).
export TOPOLOGY ?= single
LOCAL_INVENTORY := -i inventories/local $(if $(filter ha,$(TOPOLOGY)),-i inventories/local-ha)
# The environment make cost and make diagram read: local (the demo) or an inventories/ folder.
ENV ?= local
ENV_INVENTORY := $(if $(filter local,$(ENV)),$(LOCAL_INVENTORY),-i inventories/$(ENV))

.DEFAULT_GOAL := help
.PHONY: help setup setup-control image lint test test-repo test-service test-molecule test-demo \
        test-provision test-platform test-deploy demo demo-down bench-service bench-deploy docs \
        cost diagram

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## Install prerequisites, create .venv, build the test host image (safe to re-run)
	bash scripts/setup.sh

setup-control: ## Only the .venv, to deploy to AWS from any laptop (macOS or Linux, no root)
	bash scripts/setup.sh control

image: ## Build the test host image when its definition changed
	bash scripts/build-image.sh

lint: ## yamllint and ansible-lint (production profile, offline)
	yamllint --strict .
	ansible-lint

docs: ## Regenerate each role README's variables table from its defaults (tests/test_role_docs.py checks it)
	python scripts/role_docs.py --write

test: lint test-repo test-service test-molecule test-demo ## Lint, then every test suite

test-repo: ## Repository tests: collections, variable layering
	pytest tests --ignore=tests/e2e

test-service: ## The service's tests against a real PostgreSQL
	pytest service/tests

test-molecule: image ## Every molecule scenario: converge, idempotence, verify, destroy
	molecule test --all

test-provision: ## Provisioning against the emulated AWS API
	molecule test -s provision

test-platform: image ## Host platform roles: base, postgresql, reverse_proxy
	molecule test -s platform

test-deploy: image ## Deploy, rollout, rollback and validation on systemd containers
	molecule test -s deploy

test-demo: image ## End to end on the local environment (single, then ha): site.yml, re-run, --check --diff, validate, destroy
	pytest tests/e2e

demo: setup ## Run the whole pipeline locally (TOPOLOGY=ha: behind a load balancer): provision, configure, deploy, validate
	bash scripts/local-env.sh up
	ansible-playbook $(LOCAL_INVENTORY) playbooks/site.yml
	ansible-playbook $(LOCAL_INVENTORY) playbooks/status.yml
	ansible-playbook $(LOCAL_INVENTORY) playbooks/diagram.yml
	@bash scripts/local-env.sh summary

demo-down: ## Tear the local demo down: containers, emulator, local state (safe to repeat)
	bash scripts/local-env.sh down

cost: ## Monthly cost estimate of ENV's variables, both topologies, beside the seeds' figure (writes .state/ENV/cost.md)
	ansible-playbook $(ENV_INVENTORY) playbooks/cost.yml

diagram: ## Draw what exists in AWS for ENV, read-only (writes .state/ENV/architecture.png and .svg)
	ansible-playbook $(ENV_INVENTORY) playbooks/diagram.yml

bench-service: ## Service throughput and latency under gunicorn against a real PostgreSQL
	python service/bench/bench_service.py

bench-deploy: image ## Deploy lifecycle timings on the local environment (tears down a running demo)
	python scripts/bench_deploy.py

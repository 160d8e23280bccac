# `make run` and `make test` work on a fresh Debian/Ubuntu machine: they install uv and the locked
# Python dependencies, and make sure PostgreSQL and Redis answer (scripts/services.sh).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV = $(shell command -v uv >/dev/null 2>&1 && echo uv || echo python3 -m uv)
# Installed packages get their bytecode at install time: every process (each pytest worker, each
# CLI or Celery subprocess) then starts in seconds even where PYTHONDONTWRITEBYTECODE is set.
export UV_COMPILE_BYTECODE ?= 1
# Two pytest workers (the suite supports xdist: a database and a Redis db per worker).
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: help run test install services env migrate admin lint typecheck fmt check i18n clean prod-local soak

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: install env services migrate admin ## API + Celery worker + beat in the foreground (Ctrl-C stops all)
	@bash scripts/run.sh

test: install ## The whole test suite against real PostgreSQL and Redis, then ruff and mypy
	@bash scripts/services.sh test
	@bash scripts/test.sh $(PYTEST_ARGS)

install: ## uv (via pip when missing) and the locked dependencies (skipped when uv.lock is unchanged)
	@source scripts/lib.sh && ensure_uv && sync_deps

env: ## .env from .env.example when there is none
	@if [ ! -f .env ]; then cp .env.example .env && echo "==> created .env from .env.example"; fi

services: ## Make sure PostgreSQL and Redis answer (starts or installs local ones when root on Debian)
	@bash scripts/services.sh run

migrate: install ## Create the database when missing and apply the migrations
	@$(UV) run --no-sync crm migrate

admin: install ## Create the admin of .env (ADMIN_EMAIL, ADMIN_PASSWORD, ADMIN_ORGANIZATION); idempotent
	@source scripts/lib.sh && load_dotenv .env && \
	if [ -n "$${ADMIN_EMAIL:-}" ] && [ -n "$${ADMIN_PASSWORD:-}" ]; then \
		$(UV) run --no-sync crm create-admin; \
	else \
		echo "==> ADMIN_EMAIL / ADMIN_PASSWORD not set: no admin created"; \
	fi

lint: ## ruff check
	@$(UV) run --frozen ruff check src tests

typecheck: ## mypy (strict)
	@$(UV) run --frozen mypy

fmt: ## ruff format and the safe ruff fixes
	@$(UV) run --frozen ruff format src tests
	@$(UV) run --frozen ruff check --fix src tests

check: lint typecheck ## lint and typecheck

i18n: ## Messages without a Russian translation, as catalog entries to fill in (src/crm/locale/)
	@$(UV) run --frozen crm i18n-check

prod-local: install ## nginx → 3 APIs → PgBouncer → PostgreSQL, Redis, 2 workers, beat (.run/prod-local/)
	@bash scripts/prod-local.sh

SOAK_MINUTES ?= 10
soak: install ## Mixed load and faults against prod-local for SOAK_MINUTES (default 10)
	@SOAK_MINUTES=$(SOAK_MINUTES) $(UV) run --frozen python benchmarks/soak.py

clean: ## Caches and build output
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis dist build

#!/usr/bin/env bash
# Installs reelchat with its dev tools into .venv, then lints and runs every test tier.
# PostgreSQL store tests use REELCHAT_TEST_PG_URL (default: the local server on 127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh "[dev,ray]"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy src tests bench
exec .venv/bin/python -m pytest -q "$@"

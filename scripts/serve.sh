#!/usr/bin/env bash
# Installs reelchat into .venv and starts the server with its embedded defaults
# (SQLite + media under $REELCHAT_HOME or ~/.reelchat, in-process jobs, the demo model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/reelchat serve "$@"

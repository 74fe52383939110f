#!/usr/bin/env bash
# Installs reelchat into .venv and starts the server with its embedded defaults
# (SQLite + media under $REELCHAT_HOME or ~/.reelchat, the demo model rendering in a worker process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/reelchat serve "$@"

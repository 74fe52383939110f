#!/usr/bin/env bash
# Fuzz every operation of /openapi.json with schemathesis (--checks all), longer than the test does.
# Starts `reelchat serve` (demo model, fast settings) in a fresh home with one API key, runs `st run`,
# stops the server. Extra arguments go to `st run`, e.g. --max-examples 2000 --workers 2.
#   bash bench/fuzz_openapi.sh --max-examples 500
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
home="$(mktemp -d)"
port="${PORT:-8765}"
export REELCHAT_HOME="$home" REELCHAT_MAX_QUEUED_PER_KEY=3 TOKENIZERS_PARALLELISM=false
export REELCHAT_MODELS_JSON='{"sora-2": {"steps": 2, "fps": 1}, "sora-2-pro": {"steps": 2, "fps": 1}}'
key="$("$py" -m reelchat.cli keys create --name fuzz | tail -1)"
"$py" -m reelchat.cli serve --port "$port" >"$home/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$home"' EXIT
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 1; done
SCHEMATHESIS_HOOKS=openapi_fuzz_hooks PYTHONPATH="$root/bench" "$py" -m schemathesis.cli run \
  "http://127.0.0.1:$port/openapi.json" --checks all --workers 1 --request-timeout 300 \
  --header "Authorization: Bearer $key" --max-examples 1000 "$@"

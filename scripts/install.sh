#!/usr/bin/env bash
# Creates .venv (if missing) and installs reelchat into it. Used by serve.sh, test.sh and CI.
# Without an NVIDIA GPU it installs the CPU build of PyTorch first (torch==2.13.0); with one,
# pip resolves torch itself (a CUDA build), so GPU users are never pinned to the CPU wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    .venv/bin/pip install -q torch
  else
    .venv/bin/pip install -q "torch==2.13.0"
  fi
fi
.venv/bin/pip install -q -e ".${extras}"

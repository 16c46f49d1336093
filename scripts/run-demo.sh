#!/usr/bin/env bash
# Set up (if needed) and run the end-to-end demo on the embedded stack. Extra arguments go to `gridflow demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${GRIDFLOW_VENV:-.venv}/bin/gridflow" demo "$@"

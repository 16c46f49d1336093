#!/usr/bin/env bash
# Set up (if needed), lint and format check (ruff), type-check (mypy) and run the test suite. Extra arguments go to pytest, e.g. -m "not slow".
# The suite runs on GRIDFLOW_TEST_WORKERS pytest-xdist workers (default 2; 0 runs it in this process): each
# worker starts its own embedded stack; tests/conftest.py's scheduler keeps each module, and all the tests on
# the standalone Flink cluster, on one worker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
"${GRIDFLOW_VENV:-.venv}/bin/ruff" check --quiet .   # lint first: unused or undefined names fail fast
"${GRIDFLOW_VENV:-.venv}/bin/ruff" format --check --quiet . || { echo "ruff format: run '.venv/bin/ruff format .'" >&2; exit 1; }
bash scripts/typecheck.sh >/dev/null || bash scripts/typecheck.sh   # mypy: quiet when clean, the errors otherwise
exec "${GRIDFLOW_VENV:-.venv}/bin/python" -m pytest -n "${GRIDFLOW_TEST_WORKERS:-2}" --dist loadscope "$@"

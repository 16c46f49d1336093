#!/usr/bin/env bash
# mypy over the gridflow package. Its subpackages live at the top of the repository (jobs/, operators/,
# connectors/, devices/, native/ install as gridflow.jobs, ...), so mypy checks a tree of links that has
# the installed layout; messages name the repository's own paths.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/gridflow"
for entry in gridflow/*; do ln -s "$repo/$entry" "$tree/gridflow/"; done
for sub in jobs operators connectors devices native; do ln -s "$repo/$sub" "$tree/gridflow/$sub"; done
cp pyproject.toml "$tree/"
cd "$tree"
status=0
"$repo/${GRIDFLOW_VENV:-.venv}/bin/mypy" --python-executable "$repo/${GRIDFLOW_VENV:-.venv}/bin/python" \
  --cache-dir "$repo/.mypy_cache" -p gridflow > "$tree/out.txt" 2>&1 || status=$?
for sub in jobs operators connectors devices native; do sed -i "s#^gridflow/$sub/#$sub/#" "$tree/out.txt"; done
cat "$tree/out.txt"
exit $status

#!/usr/bin/env bash
# Installs everything the test suite needs into .venv, then runs ruff and the whole suite.
# Used by README's test command and by CI (.ci/run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/ruff check node tests bench
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

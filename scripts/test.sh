#!/usr/bin/env bash
# Installs everything the test suite needs into .venv, then runs ruff, mypy, the import contracts and
# the whole suite.
# Used by README's test command and by CI (.ci/run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Browser tests drive Debian's Chromium (never a downloaded browser build), with a CJK font so that
# the Chinese pages render in their screenshots. Idempotent; CI runs as root.
if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi wqy; then
  echo "installing Debian's chromium and fonts-wqy-zenhei with apt-get (for the browser tests)" >&2
  (apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null) \
    || echo "warning: could not install chromium; browser tests will skip (or fail where services are required)" >&2
fi
# PgBouncer in transaction mode, started by tests/test_ops.py in front of the test's database.
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
  (apt-get install -y -qq pgbouncer >/dev/null || (apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null)) \
    || echo "warning: could not install pgbouncer; its test will skip" >&2
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/ruff check node tests bench setup.py
.venv/bin/mypy  # [tool.mypy] in pyproject.toml: strict for the engine, money and the store protocol
.venv/bin/lint-imports --no-logo --no-cache  # [tool.importlinter]: the layers of docs/architecture.md
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

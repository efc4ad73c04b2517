#!/usr/bin/env bash
# Installs everything the test suite needs, then runs lint and every test.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_system_packages graphviz chromium nodejs npm
ensure_services
ensure_venv test

echo "== ruff"
.venv/bin/ruff check src tests bench
echo "== pytest"
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
# pytest exits 5 when it collected nothing: that must fail CI, not pass silently.
exit $status

#!/usr/bin/env bash
# Installs opencampaign into .venv and starts a server with demo data on the embedded databases
# (SQLite + DuckDB in ./data). Usage: bash scripts/serve-demo.sh [--port 8080]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_venv
export OPENCAMPAIGN_ADMIN_PASSWORD="${OPENCAMPAIGN_ADMIN_PASSWORD:-admin}"
echo "Operator: admin / ${OPENCAMPAIGN_ADMIN_PASSWORD}"
exec .venv/bin/opencampaign serve --data-dir "${OPENCAMPAIGN_DATA_DIR:-./data}" --demo "$@"

#!/usr/bin/env bash
# The overhead benchmark with auth, limits, budgets and recording on (issue 3).
# usage: bench/gateway-overhead/governed.sh embedded|scale-out|guarded   (from the repo root; see bench/README-gateway.md)
#   embedded:  SQLite + in-process limits and budgets
#   guarded:   embedded, with the default guards on (bench/configs/guarded.yaml)
#   scale-out: PostgreSQL (a fresh database gp_bench on 127.0.0.1) + Redis (127.0.0.1:6379, prefix gpbench)
set -euo pipefail
MODE=${1:?embedded, scale-out or guarded}
REPO=$(cd "$(dirname "$0")/../.." && pwd); cd "$REPO"
HOME_DIR=$(mktemp -d /tmp/gp-bench-XXXX)
export GOLDENPATH_HOME=$HOME_DIR GOLDENPATH_ADMIN_KEY=sk-bench-admin-0123456789 GOLDENPATH_SECRET=bench-secret-0123456789
CONFIG=bench/configs/governed.yaml
[ "$MODE" = guarded ] && CONFIG=bench/configs/guarded.yaml
if [ "$MODE" = scale-out ]; then
  psql -h 127.0.0.1 -U postgres -d postgres -qc 'DROP DATABASE IF EXISTS gp_bench WITH (FORCE)' -c 'CREATE DATABASE gp_bench'
  redis-cli --scan --pattern 'gpbench:*' | xargs -r redis-cli del >/dev/null
  export GOLDENPATH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/gp_bench GOLDENPATH_REDIS_URL=redis://127.0.0.1:6379/0
  sed 's/^models:/redis_prefix: gpbench\nmodels:/' bench/configs/governed.yaml > "$HOME_DIR/governed.yaml"
  CONFIG=$HOME_DIR/governed.yaml
fi
GP=.venv/bin/goldenpath
$GP tenants create bench --rpm 100000000 --tpm 1000000000 --budget-usd 1000000 --config "$CONFIG"
KEY=$($GP keys create --tenant bench --name wrk --models fake-model --rpm 100000000 --tpm 1000000000 \
      --budget-usd 1000000 --config "$CONFIG" | tail -n 1)
GATEWAY_CMD="$GP serve --config $CONFIG" GATEWAY_KEY=$KEY bench/gateway-overhead/run_all.sh
mkdir -p bench/results/governed-$MODE && cp bench/results/*.jsonl bench/results/summary.md bench/results/startup.json bench/results/governed-$MODE/

#!/usr/bin/env bash
# The scale-out acceptance tests (issue 9): gateways sharing PostgreSQL and Redis, and scans on Ray.
# Starts PostgreSQL and Redis with scripts/services.sh (installing them from Debian's packages if missing),
# runs the slow tests against them, and stops them on exit, whatever happened.
#
#   scripts/scale_test.sh [extra pytest arguments]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
trap 'scripts/services.sh stop' EXIT

environment=$(scripts/services.sh start)
BASTION_TEST_DATABASE_URL=$(sed -n 's/^BASTION_DATABASE_URL=//p' <<<"$environment")
BASTION_TEST_LIMITS_URL=$(sed -n 's/^BASTION_LIMITS_URL=//p' <<<"$environment")
export BASTION_TEST_DATABASE_URL BASTION_TEST_LIMITS_URL

if ! .venv/bin/python -c "import ray" 2>/dev/null; then
    echo "scale_test: installing Ray" >&2
    .venv/bin/pip install -q --constraint constraints.txt 'ray>=2.9'
fi

.venv/bin/pytest -q -m slow tests/test_scale_gateway.py tests/test_scan_engine.py tests/test_scan_ray_cluster.py "$@"

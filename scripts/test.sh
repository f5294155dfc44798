#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: setup (idempotent), then pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --pythons
mkdir -p artifacts
exec .venv/bin/python -m pytest "$@"

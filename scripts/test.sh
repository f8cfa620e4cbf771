#!/usr/bin/env bash
# The test suite. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" requirements-test.lock
cd "$root"
exec "$venv/bin/python" -m pytest -n 2 "$@"

#!/usr/bin/env bash
# The test suite: the type checker over src/ (mypy, pinned in the lock; its cache lives in
# .venv), then pytest. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" requirements-test.lock
cd "$root"
"$venv/bin/python" -m mypy --cache-dir "$venv/.mypy_cache" src/
exec "$venv/bin/python" -m pytest -n 2 "$@"

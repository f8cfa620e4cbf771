#!/usr/bin/env bash
# The main job: composed_lifts_forward on the built-in default example.
# Extra arguments go to `composed-lifts run` (try --help).
set -euo pipefail
source "$(dirname "$0")/_venv.sh" requirements.lock
exec "$venv/bin/composed-lifts" run "$@"

# Sourced by scripts/run.sh and scripts/test.sh: make sure .venv exists in the
# repo root and holds the pinned dependencies named by $1 (a lock file).
# Re-installs only when the lock file or pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
lock="$root/$1"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then py="$candidate"; break; fi
  done
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv with $py" >&2
  "$py" -m venv "$venv"
fi
stamp="$venv/.installed-$(basename "$lock")"
want="$(cat "$lock" "$root/requirements.lock" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing pinned dependencies from $(basename "$lock") (about a minute)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root"
  echo "$want" > "$stamp"
fi

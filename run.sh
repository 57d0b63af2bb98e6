#!/usr/bin/env bash
# One entry point: sets up .venv when missing or stale, then runs what was asked.
#   bash run.sh demo [runner options]   the whole analysis on the demo data -> reports/
#   bash run.sh test [pytest options]   unit tests + nbval over every notebook
#   bash run.sh lab                     JupyterLab on notebooks/
#   bash run.sh app [voila options]     the prediction panel (notebook 04) as a page: http://localhost:8866/
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV="${METERLIB_VENV:-.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.meterlib-installed"

ensure_env() {
    local want
    want=$(cat pyproject.toml environment.yml | sha256sum | cut -d' ' -f1)
    if [ -x "$PY" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
        return
    fi
    echo "Setting up $VENV (first run takes a few minutes) ..."
    [ -x "$PY" ] || python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -e ".[analysis,test,onnx,scale]"
    echo "$want" > "$STAMP"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    demo)  ensure_env; exec "$PY" -m meterlib run --profile demo "$@" ;;
    smoke) ensure_env; exec "$PY" -m meterlib run --profile smoke "$@" ;;
    test)  ensure_env; METERLIB_OFFLINE=1 exec "$PY" -m pytest "$@" ;;
    lab)   ensure_env; exec "$VENV/bin/jupyter" lab notebooks "$@" ;;
    app)   ensure_env; exec "$VENV/bin/voila" notebooks/04_predict_panel.ipynb --no-browser "$@" ;;
    *) echo "usage: bash run.sh demo|smoke|test|lab|app [options]" >&2; exit 2 ;;
esac

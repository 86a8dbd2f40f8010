# Sourced by scripts/run-consortium and scripts/run-tests: make sure .venv exists and has
# requirements.txt installed. pip runs only when requirements.txt changed since the last install
# (a hash of it is kept in .venv/.requirements.sha256), so the second run starts at once.
# Not executable on its own.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"

pick_python() {
    # The project needs Python 3.11 or newer; PYTHON=/path/to/python overrides the search.
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11 python; do
        if command -v "$candidate" >/dev/null 2>&1 &&
           "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "error: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

ensure_venv() {
    # Two scripts started at once must not build the venv twice: hold a lock on the scripts folder.
    if command -v flock >/dev/null 2>&1; then
        exec 9<"$ROOT/scripts"
        flock 9
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        local python
        python="$(pick_python)" || return 1
        echo "creating $VENV with $("$python" --version 2>&1)" >&2
        if ! "$python" -m venv "$VENV"; then
            rm -rf "$VENV"
            echo "error: '$python -m venv' failed; on Debian/Ubuntu run: sudo apt-get install -y python3-venv" >&2
            return 1
        fi
    fi
    local want have
    want="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
    have="$(cat "$STAMP" 2>/dev/null || true)"
    if [ "$want" != "$have" ]; then
        echo "installing requirements.txt into .venv ..." >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt" >&2
        echo "$want" >"$STAMP"
    fi
    if command -v flock >/dev/null 2>&1; then
        exec 9<&-
    fi
}

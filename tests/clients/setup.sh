#!/usr/bin/env bash
# Installs the outside clients the tests drive (tests/clients/requirements.txt) into a virtual
# environment under the target directory: `cargo xtask test` runs this first. Quick when they are
# already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${CARGO_TARGET_DIR:-$root/target}/clients-venv"
requirements="$root/tests/clients/requirements.txt"
stamp="$venv/.requirements"
if [[ -f "$stamp" ]] && cmp -s "$stamp" "$requirements"; then
    exit 0
fi
python=$(command -v python3 || true)
if [[ -z "$python" ]]; then
    echo "tests/clients/setup.sh: python3 is needed for the outside clients (schemathesis, the MCP SDK); install Python 3.10 or newer" >&2
    exit 1
fi
echo "tests/clients: installing $(grep -cv '^#' "$requirements") clients into $venv (a minute the first time)" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -r "$requirements"
cp "$requirements" "$stamp"

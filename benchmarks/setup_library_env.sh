#!/usr/bin/env bash
# The library comparison's own environment: .venv-kge/ sees the project's .venv (same torch,
# torchrec and studylib, through a .pth file) and adds PyKEEN, which the project does not depend on.
set -euo pipefail
cd "$(dirname "$0")/.."
test -x .venv/bin/python || make setup
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
test -x .venv-kge/bin/python || .venv/bin/python -m venv --without-pip .venv-kge 2>/dev/null || python3 -m venv .venv-kge
kge_site=$(.venv-kge/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# "import site" (not a bare path) so that .venv's own .pth files run too: the editable studylib
echo "import site; site.addsitedir('$site')" > "$kge_site/project-venv.pth"
.venv-kge/bin/python -m pip --version >/dev/null 2>&1 || .venv-kge/bin/python -m ensurepip --quiet
.venv-kge/bin/python -m pip install --quiet pykeen==1.11.1
echo "library environment ready: .venv-kge (PyKEEN 1.11.1 beside the project's .venv)"

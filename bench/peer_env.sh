#!/usr/bin/env bash
# A separate environment with the authors' library and what its environments import, for
# the side-by-side benchmarks (bench/render_parity.py). Never lewm's own environment: the
# authors' package pulls torchvision, so it is installed with --no-deps beside a CPU torch
# and the packages its Two-Room and Push-T modules need.
#
#   bash bench/peer_env.sh [.peer-venv]
set -euo pipefail
VENV=${1:-.peer-venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "torch==2.13.0"
"$VENV/bin/pip" install -q numpy pillow gymnasium pymunk pygame shapely opencv-python-headless \
    loguru einops
"$VENV/bin/pip" install -q --no-deps "stable-worldmodel==0.1.1"
echo "made $VENV: python bench/render_parity.py --peer-python $VENV/bin/python"

#!/usr/bin/env bash
# The CUDA checks of one lent GPU session, in one command (a fresh machine with torch and
# no network; missing wheels travel in .whl/): the paper model against the authors' on the
# GPU, a bf16 training step of the paper preset, torch.compile, and pusht-paper trained for
# as long as the session allows, then evaluated (50 episodes) and probed on the GPU.
#
#   bench/gpu_session.sh OUT_DIR [EPISODES] [TRAIN_SECONDS]
set -uo pipefail
OUT=${1:?output directory}; EPISODES=${2:-200}; TRAIN_S=${3:-200}
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:$PWD/tests:${PYTHONPATH:-} PYTHONUNBUFFERED=1
lewm() { python3 -m lewm.cli "$@"; }
stamp() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"

stamp parity on cuda
python3 bench/parity.py --device cuda --seeds 1 && cp bench/results/parity_cuda.json "$OUT/"
stamp training throughput, bf16
python3 bench/train_throughput.py --presets paper tworoom-cpu && \
    cp bench/results/train_throughput_gpu.json "$OUT/"

stamp collect pusht at 224 px
DATA=/tmp/pusht224.h5
lewm collect --preset pusht-paper --episodes "$EPISODES" --out $DATA --quiet --num-envs 16
stamp torch.compile, 30 steps
timeout 240 python3 -m lewm.cli train --preset pusht-paper --data $DATA --out /tmp/compiled \
    --set compile=true --set epochs=0 --set steps=30 --set log_every=10 --quiet
tail -n 3 /tmp/compiled/metrics.jsonl > "$OUT/compile_metrics.jsonl"
stamp pusht-paper for "$TRAIN_S" s
timeout -s INT "$TRAIN_S" python3 -m lewm.cli train --preset pusht-paper --data $DATA \
    --out /tmp/pp --quiet
cp /tmp/pp/metrics.jsonl "$OUT/pusht_paper_metrics.jsonl"
stamp eval on cuda
lewm eval /tmp/pp --device cuda --gifs 1 && cp /tmp/pp/eval.json "$OUT/pusht_paper_eval.json"
stamp probe on cuda
lewm probe /tmp/pp --device cuda && cp /tmp/pp/probe.json "$OUT/pusht_paper_probe.json"
stamp done

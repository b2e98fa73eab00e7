#!/usr/bin/env bash
# The CUDA checks of one lent GPU session, in one command (a fresh machine with torch and no
# network; missing wheels travel in .whl/, a Push-T dataset in .gpu/):
#   1. planning latency of the paper and tworoom-cpu models, fp32 / bf16 / bf16 compiled
#      (CUDA graphs), 1 and 50 episodes -> planning_latency_cuda.json
#   2. training throughput, bf16, eager and compiled -> train_throughput_cuda.json
#   3. the paper's ViT-Tiny at 64 px (patch 8) on the pusht-cpu data, trained for STEPS
#      steps, then probed and evaluated (does the ViT read the block angle at 64 px, where
#      the CPU recipe's CNN does not?)
#
#   bench/gpu_session.sh OUT_DIR [DATA] [STEPS]
# (earlier sessions ran parity on cuda and pusht-paper for 180 s: git log of this file)
set -uo pipefail
OUT=${1:?output directory}; DATA=${2:-.gpu/pusht64.h5}; STEPS=${3:-3000}
mkdir -p "$OUT"
source bench/gpu_common.sh
export PYTHONPATH=$PWD/src:$PWD/tests:${PYTHONPATH:-} PYTHONUNBUFFERED=1
lewm() { python3 -m lewm.cli "$@"; }
stamp() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"

stamp planning latency
timeout 180 python3 bench/planning_latency.py --models paper tworoom-cpu \
    --variants fp32 bf16 bf16+compile --reps 5; cp bench/results/planning_latency_cuda.json "$OUT/"
stamp training throughput
timeout 140 python3 bench/train_throughput.py --presets paper tworoom-cpu --compile; cp bench/results/train_throughput_cuda.json "$OUT/"

stamp "ViT-Tiny at 64 px on Push-T, $STEPS steps"
decompress "$DATA" /tmp/pusht64.h5
timeout -s INT 180 python3 -m lewm.cli train --preset pusht-paper --data /tmp/pusht64.h5 --out /tmp/vit64 \
    --set model.image_size=64 --set model.patch_size=8 --set epochs=0 --set steps="$STEPS" \
    --set val_every=1000 --set ckpt_every=1000 --quiet
cp /tmp/vit64/metrics.jsonl "$OUT/vit64_metrics.jsonl"
lewm probe /tmp/vit64 --device cuda && cp /tmp/vit64/probe.json "$OUT/vit64_probe.json"
lewm eval /tmp/vit64 --device cuda && cp /tmp/vit64/eval.json "$OUT/vit64_eval.json"
stamp done

#!/usr/bin/env bash
# Push-T on one lent GPU: which of the 64 px ViT run's differences from the CPU recipe makes
# the encoder read the block's angle? Four trainings share the GPU at once (each is far from
# filling it), then each is probed and evaluated on the 50-episode protocol:
#   cnn-paperopt  the pusht-cpu CNN with the paper's optimisation (lr 5e-5, batch 128,
#                 warm-up 500)
#   cnn-paperrest the pusht-cpu CNN with everything else of the paper (D 192, M 1024,
#                 predictor 6 x 16 heads, dropout 0.1, lr 5e-5, batch 128): the encoder alone
#                 differs from the ViT run
#   vit-cpuopt    the paper's ViT-Tiny at 64 px with everything else of pusht-cpu (D 64,
#                 lambda 0.1, M 256, small predictor, batch 64) at lr 5e-4: the encoder alone
#                 differs from the CPU recipe
#   vit-paper     the paper's ViT-Tiny at 64 px with the paper's settings, longer than the
#                 3,000 steps of bench/results/pusht_vit64_h200.json
#
#   bench/gpu_pusht_sweep.sh OUT_DIR [DATA] [TRAIN_SECONDS]
#
# First lent run (H100, 330 s of training): steps reached 9,112 / 6,808 / 5,157 / 4,107 in the
# order above, but the four probes running at once had not finished 3.5 min later, and the
# machine (released 30 s after the call) took the runs with it. Four processes each with
# torch's 16 threads on 16 cores made the probes' small MLP steps crawl: hence
# OMP_NUM_THREADS=4 below, a time limit on each probe and evaluation, and the results packed
# into OUT_DIR after training and at the end.
set -uo pipefail
DEST=${1:?output directory}; DATA=${2:-.gpu/pusht64.h5}; SECS=${3:-330}
# The device tool returns at most 8 files: results gather in OUT and travel as one archive,
# packed after training and again at the end.
OUT=/tmp/sweep; mkdir -p "$OUT" "$DEST"
pack() { tar czf "$DEST/sweep.tgz" -C "$OUT" .; }
source bench/gpu_common.sh
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
stamp() { echo "[$(date +%T)] $*"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"

decompress "$DATA" /tmp/pusht64.h5
stamp data ready

CPU="--preset pusht-cpu --set threads=4"
PAPER_PRED="--set model.pred_depth=6 --set model.pred_heads=16 --set model.pred_head_dim=64 --set model.pred_mlp=2048"
VIT="--set model.encoder=vit --set model.patch_size=8 --set model.enc_dim=192 --set model.enc_depth=12 --set model.enc_heads=3 --set model.enc_mlp=768"
declare -A RUNS=(
    [cnn-paperopt]="$CPU --set lr=5e-5 --set batch_size=128 --set warmup_steps=500 --set steps=10000"
    [cnn-paperrest]="$CPU $PAPER_PRED --set model.embed_dim=192 --set num_proj=1024 --set model.dropout=0.1 --set lambd=0.09 --set lr=5e-5 --set batch_size=128 --set warmup_steps=500 --set steps=8000"
    [vit-cpuopt]="$CPU $VIT --set lr=5e-4 --set steps=6000"
    [vit-paper]="--preset pusht-paper --set threads=4 --set model.image_size=64 --set model.patch_size=8 --set epochs=0 --set steps=5000 --set val_every=1000 --set ckpt_every=1000"
)
for name in "${!RUNS[@]}"; do
    # shellcheck disable=SC2086
    timeout -s INT "$SECS" python3 -m lewm.cli train ${RUNS[$name]} --data /tmp/pusht64.h5 \
        --out "/tmp/runs/$name" --quiet > "$OUT/$name.train.log" 2>&1 &
done
wait
stamp trained
tail -n 3 "$OUT"/*.train.log
pack
for name in "${!RUNS[@]}"; do
    ( save() { for f in "$@"; do [ -f "/tmp/runs/$name/$f" ] && cp "/tmp/runs/$name/$f" "$OUT/$name.$f"; done; }
      save metrics.jsonl
      timeout 90 python3 -m lewm.cli probe "/tmp/runs/$name" --device cuda > "$OUT/$name.probe.log" 2>&1
      save probe.json
      timeout 150 python3 -m lewm.cli eval "/tmp/runs/$name" --device cuda > "$OUT/$name.eval.log" 2>&1
      save eval.json ) &
done
wait
pack
stamp done
python3 - "$OUT" <<'EOF2'
import json, pathlib, sys
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.probe.json")):
    name = p.name.split(".")[0]
    lin = {k: round(v["r"], 3) for k, v in json.loads(p.read_text())["probes"]["linear"].items()}
    ev = pathlib.Path(sys.argv[1], name + ".eval.json")
    ev = json.loads(ev.read_text()) if ev.exists() else {}
    print(name, "probe", lin, "success", ev.get("success_rate"), "random", ev.get("random_success_rate"))
EOF2

"""Training-batch read throughput at 224 px from a compressed episode file on disk, with the
background thread (`workers=0`) and with 1, 2, ... reader processes (`--set workers=N`):
frames/s delivered to the training loop, as `lewm train` reads them (`batch_indices` ->
`ClipDataset.batch` -> tensors, batches of 128 clips of 4 frames; uint8, pinned on CUDA).

    python bench/loader_throughput.py [--compression blosc] [--workers 0 1 2] [--seconds 10]
        [--image-chunk-rows 16]

`--image-chunk-rows N` rewrites the images in chunks of N frames (lewm writes compressed
images one frame per chunk; 16 was its earlier layout) to compare the two.

The paper model trains at ~8,000 frames/s (bf16) to ~11,000 (compiled) on an H200
(bench/results/train_throughput_cuda.json): a loader under that makes the GPU wait.
"""

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import torch
from common import machine, save

from lewm.data.clips import ClipDataset, EpisodeData, batch_indices, fit_stats
from lewm.data.collect import CollectConfig, collect
from lewm.data.hdf5 import compression_args
from lewm.data.prefetch import as_tensors, prefetcher

p = argparse.ArgumentParser()
p.add_argument("--world", default="pusht")
p.add_argument("--episodes", type=int, default=40)
p.add_argument("--steps", type=int, default=100)
p.add_argument("--size", type=int, default=224)
p.add_argument("--compression", default="blosc", help="none, lzf, gzip or blosc")
p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
p.add_argument("--batch", type=int, default=128)
p.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
p.add_argument("--image-chunk-rows", type=int, default=0, help="rechunk images (0: as written)")
args = p.parse_args()
pin = torch.cuda.is_available()

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "episodes.h5"
    collect(CollectConfig(args.world, episodes=args.episodes, steps=args.steps, size=args.size,
                          compression=args.compression), path, progress=False)
    if args.image_chunk_rows:
        with h5py.File(path, "a") as f:
            pixels = f["pixels"]
            data = pixels[()]
            del f["pixels"]
            f.create_dataset("pixels", data=data, chunks=(args.image_chunk_rows, *data.shape[1:]),
                             **compression_args(args.compression))
    data = EpisodeData(path, in_memory=False)  # read clip by clip from disk, as at scale
    chunk_rows = data.file["pixels"].chunks[0]
    eps = range(data.num_episodes)
    ds = ClipDataset(data, eps, clip_frames=4, frameskip=5, stats=fit_stats(data, eps))

    def read_batch(step: int):
        return as_tensors(ds.batch(batch_indices(len(ds), args.batch, 0, step)))

    rows = {}
    for workers in args.workers:
        steps = range(10**9)
        loader = prefetcher(read_batch, steps, depth=2, pin=pin, workers=workers,
                            worker_init=data.reopen)
        batches = iter(loader)
        for _ in range(2 * max(1, workers)):  # warm-up: workers started, queues filled once
            next(batches)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            _, (pixels, _) = next(batches)
            done += pixels.shape[0] * pixels.shape[1]
        loader.close()
        rate = done / (time.perf_counter() - start)
        rows[f"workers={workers}"] = {"frames_per_s": round(rate)}
        print(workers, rows[f"workers={workers}"], flush=True)
    data.close()

save(f"loader_throughput_{'cuda' if pin else 'cpu'}", {
    "file": f"{args.episodes} x {args.steps}-step {args.world} episodes at {args.size} px, "
            f"{args.compression} compression, on disk (not in memory), images in chunks of "
            f"{chunk_rows} frame(s)",
    "read": f"batches of {args.batch} clips (4 frames every 5 steps) as `lewm train` reads "
            "them, after the loader's queues are full",
    "cores": machine()["cores"], "results": rows})

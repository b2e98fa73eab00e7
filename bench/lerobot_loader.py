"""What training from a LeRobot directory costs against lewm's HDF5 file: the time to open
each (a LeRobot directory in memory decodes every frame first), and training batches
assembled as `lewm train` does (`batch_indices` -> `ClipDataset.batch`), in frames/s, from

- the HDF5 file in memory and on disk (frame by frame),
- the LeRobot copy decoded into memory at open, and decoded on demand (each frame seeks its
  key frame and decodes forward: what a dataset too large for memory costs),

for each codec `lewm convert` writes.

    python bench/lerobot_loader.py DATA.h5 [--codecs av1 lossless] [--batch 64] [--seconds 10]
"""

import argparse
import tempfile
import time
from pathlib import Path

from common import save

from lewm.data.clips import ClipDataset, EpisodeData, batch_indices, fit_stats
from lewm.data.lerobot import write_lerobot

p = argparse.ArgumentParser()
p.add_argument("data", help="an episode file (e.g. the demo's Two-Room data)")
p.add_argument("--codecs", nargs="+", default=["av1", "h264", "lossless"])
p.add_argument("--batch", type=int, default=64)
p.add_argument("--clip-frames", type=int, default=4)
p.add_argument("--frameskip", type=int, default=5)
p.add_argument("--seconds", type=float, default=10.0)
args = p.parse_args()


def measure(data: EpisodeData) -> dict:
    eps = range(data.num_episodes)
    clips = ClipDataset(data, eps, args.clip_frames, args.frameskip, fit_stats(data, eps))
    step, frames, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        clips.batch(batch_indices(len(clips), args.batch, 0, step))
        step, frames = step + 1, frames + args.batch * args.clip_frames
    dt = time.perf_counter() - start
    return {"frames_per_s": frames / dt, "batches": step}


def opened(path, in_memory) -> tuple[EpisodeData, float]:
    t = time.perf_counter()
    data = EpisodeData(path, in_memory=in_memory)
    return data, time.perf_counter() - t


rows = []
for in_memory in (True, False):
    data, secs = opened(args.data, in_memory)
    rows.append({"source": "hdf5", "in_memory": in_memory, "open_s": secs, **measure(data)})
    data.close()
    print(rows[-1], flush=True)
with tempfile.TemporaryDirectory() as tmp:
    for codec in args.codecs:
        out = Path(tmp) / codec
        t = time.perf_counter()
        write_lerobot(args.data, out, codec=codec, progress=False)
        convert_s = time.perf_counter() - t
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        for in_memory in (True, False):
            data, secs = opened(out, in_memory)
            rows.append({"source": f"lerobot {codec}", "in_memory": in_memory,
                         "open_s": secs, "convert_s": convert_s, "bytes": size,
                         **measure(data)})
            data.close()
            print(rows[-1], flush=True)

save("lerobot_loader_cpu", {"data": args.data, "bytes_hdf5": Path(args.data).stat().st_size,
                            "batch": args.batch, "clip_frames": args.clip_frames,
                            "frameskip": args.frameskip, "rows": rows})

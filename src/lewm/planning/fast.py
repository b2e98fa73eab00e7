"""The speed seam of planning: compiled rollouts and allocator settings. Each trick here gives
the same plans as `LeWM.rollout` run eagerly (tests/test_planning.py), and every private
torch or libc API lewm uses is used here only, with a fallback that still plans correctly
when it is missing (another torch version, another libc)."""

from __future__ import annotations

import functools
import importlib.util
import shutil

import torch

from lewm.errors import LewmError


def _fingerprint(model) -> tuple:
    """Changes when any parameter is replaced or updated in place (the in-place version
    counter is private to torch; without it, every call rebuilds: slower, still right)."""
    versions = [getattr(p, "_version", None) for p in model.parameters()]
    if any(v is None for v in versions):
        return (object(),)
    return tuple((p.data_ptr(), v) for p, v in zip(model.parameters(), versions))


def compiled_rollout(model):
    """`model.rollout` through torch.compile, built once per model and kept on it. On CUDA it
    replays CUDA graphs (mode 'reduce-overhead'): a plan of one episode is hundreds of small
    kernels, which graphs launch at once. On a CPU the weights are frozen into the compiled
    code (inductor's `freezing`: linear layers prepacked for oneDNN), so it is rebuilt if the
    weights change. Each new batch shape (episodes finishing) compiles again. Past torch's
    recompile limit it falls back to eager: the same answers at eager speed."""
    cuda = torch.device(model.device).type == "cuda"
    weights = _fingerprint(model)
    built = model.__dict__.get("_compiled_rollout")
    if built is None or built[0] != weights:
        if cuda and importlib.util.find_spec("triton") is None:
            raise LewmError("--compile on CUDA needs triton (pip install triton)")
        if not cuda and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            raise LewmError("--compile on a CPU needs a C++ compiler (e.g. apt-get install g++)")
        if cuda:
            fn = torch.compile(model.rollout, mode="reduce-overhead")
        else:
            fn = _frozen_compile(model.rollout)
        built = model.__dict__["_compiled_rollout"] = (weights, fn)
    return built[1]


def _frozen_compile(rollout):
    """torch.compile with inductor's freezing on around every call (compilation is lazy, at
    the first call and at each new batch shape, and torch.compile's `options` did not reach
    the freezing pass in torch 2.13). torch keeps compiled code per Python function, guarded
    by the model's identity but not by its weights' values, so the cache is reset first:
    code that froze other weights would be reused. Without these private APIs: compiled
    without freezing, which reads the weights live and needs no reset."""
    try:
        from torch._inductor import config

        reset = torch._dynamo.reset
        patch = config.patch
    except (ImportError, AttributeError):
        return torch.compile(rollout)
    reset()
    compiled = torch.compile(rollout)

    def run(*args):
        with patch(freezing=True):
            return compiled(*args)

    return run


@functools.cache  # once per process
def keep_freed_memory() -> None:
    """Have glibc keep freed blocks of up to 32 MB for reuse instead of returning them to the
    OS. A plan allocates activations of a few MB per layer and frees them at once; by default
    each is mmap-ed afresh and its pages faulted in again (docs/planning.md). The process then
    holds on to its peak memory. A no-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed value on 64-bit
    mallopt(M_TRIM_THRESHOLD, 1 << 30)

"""The speed seam of planning. `LeWM.rollout` and the predictor's `forward` are the
definition; here are the same computations made fast: a rollout that caches keys and values
while its window grows, computes the last token's output alone, computes each token's AdaLN
modulation once, skips the softmax of a lone token and, under torch.compile, writes out the
attention over its few keys; the compiled rollout; the allocator settings. Each is tested
equal to the definition (tests/test_model.py, tests/test_planning.py), and every private
torch or libc API lewm uses is used here only, with a fallback that still plans correctly
when it is missing (another torch version, another libc)."""

from __future__ import annotations

import functools
import importlib.util
import shutil

import torch
import torch.nn.functional as F

from lewm.errors import LewmError
from lewm.model.lewm import LeWM
from lewm.model.predictor import modulate

KV = tuple[torch.Tensor, torch.Tensor]  # one block's keys and values (B, heads, T, head_dim)

# Planning attends over at most `history` (3) tokens: there a fused attention kernel costs
# more to set up than the few dot products it computes (on a CPU, a quarter of a compiled
# plan's time), while the same products written out are element-wise work that
# torch.compile fuses. Run eagerly they are not fused, and materialise (rows, heads, Tq, Tk,
# head_dim) products: slower than the kernel for the paper model, so eager code keeps it.
SHORT_WINDOW = 8


def short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    causal: bool) -> torch.Tensor:
    """Softmax attention written out for a few keys: q (B, nh, Tq, hs), k and v (B, nh, Tk,
    hs) -> (B, nh, Tq, hs). With `causal`, query i (the queries being the last Tq tokens)
    sees keys j <= i + Tk - Tq, as scaled_dot_product_attention's is_causal with Tq = Tk."""
    Tq, Tk = q.shape[2], k.shape[2]
    s = (q.unsqueeze(3) * k.unsqueeze(2)).sum(-1) * q.shape[-1] ** -0.5  # (B, nh, Tq, Tk)
    if causal:
        i = torch.arange(Tq, device=q.device)[:, None] + (Tk - Tq)
        s = s.masked_fill(torch.arange(Tk, device=q.device)[None, :] > i, float("-inf"))
    w = s.softmax(-1)
    return (w.unsqueeze(-1) * v.unsqueeze(2)).sum(3)  # (B, nh, Tq, hs)


def attend(attn, x: torch.Tensor, past: KV | None, last_only: bool) -> tuple[torch.Tensor, KV]:
    """`CausalAttention.forward` of x (B, T, C) after the P tokens whose keys and values are
    `past` (then x is one token, seeing all of them): (output (B, T, C), or (B, 1, C) for
    the last token alone with `last_only`; the keys and values of every token so far)."""
    B, T, _ = x.shape
    if past is None and T == 1 and not (attn.training and attn.drop.p > 0):
        # One token attending to itself alone: its softmax weight is exactly 1, so the
        # output is its value, and its query is never needed (a history-1 model's rollout
        # is nothing but such windows). Keys are kept for a cache.
        hd = attn.heads * attn.head_dim
        k, v = F.linear(attn.norm(x), attn.qkv.weight[hd:]).view(
            B, 1, 2, attn.heads, attn.head_dim).unbind(2)
        out = attn.drop(attn.out(v.reshape(B, 1, hd)))  # (B, 1, C)
        return out, (k.transpose(1, 2), v.transpose(1, 2))
    q, k, v = attn.qkv(attn.norm(x)).view(B, T, 3, attn.heads, attn.head_dim).unbind(2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
    if past is not None:
        if T != 1:
            raise ValueError(f"attention with a cache takes one new token, got {T}")
        k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
    if last_only:
        q = q[:, :, -1:]  # the last token sees every key: no mask needed
    causal = q.shape[2] > 1
    if torch.compiler.is_compiling() and not attn.training and k.shape[2] <= SHORT_WINDOW:
        a = short_attention(q, k, v, causal)
    else:
        p = attn.drop.p if attn.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=p)
    out = attn.drop(attn.out(a.transpose(1, 2).reshape(B, q.shape[2], -1)))  # (B, Tq, C)
    return out, (k, v)


def block_step(block, x: torch.Tensor, mod: torch.Tensor, past: KV | None,
               last_only: bool) -> tuple[torch.Tensor, KV]:
    """`AdaLNBlock.forward` with its modulation `mod` (B, T, 6C) computed already, a cache
    and the last token alone (see `attend`)."""
    shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)  # (B, T, C)
    h, kv = attend(block.attn, modulate(block.norm1(x), shift1, scale1), past, last_only)
    if last_only:
        x, gate1, shift2, scale2, gate2 = (t[:, -1:] for t in (x, gate1, shift2, scale2, gate2))
    x = x + gate1 * h
    return x + gate2 * block.mlp(modulate(block.norm2(x), shift2, scale2)), kv


def predict_step(predictor, x: torch.Tensor, mods: list[torch.Tensor],
                 past: list[KV] | None = None, last_only: bool = False
                 ) -> tuple[torch.Tensor, list[KV]]:
    """`Predictor.forward` of x's tokens, at positions P.. after the P tokens cached in `past`
    (exact only while the sequence grows from position 0: once a window slides, every
    token's position embedding changes). mods: each block's modulation of x's tokens.
    Returns (outputs, each block's keys and values so far)."""
    start = 0 if past is None else past[0][0].shape[2]
    x = x + predictor.pos[:, start : start + x.shape[1]]
    cache = []
    for i, block in enumerate(predictor.blocks):
        last = last_only and i == len(predictor.blocks) - 1
        x, kv = block_step(block, x, mods[i], None if past is None else past[i], last)
        cache.append(kv)
    return predictor.norm(x), cache


def fast_rollout(model: LeWM, context_emb: torch.Tensor, context_actions: torch.Tensor | None,
                 future_actions: torch.Tensor) -> torch.Tensor:
    """`model.rollout`, the same predictions faster (see the module docstring)."""
    H, K = context_emb.shape[1], future_actions.shape[1]
    acts = model.rollout_actions(context_emb, context_actions, future_actions)  # (B, H-1+K, D)
    # While the sequence still fits the history (positions 0, 1, ...), earlier tokens keep
    # their positions and, the attention being causal, their keys and values: a cache makes
    # each step one new token. Once the window slides, it is recomputed. A token's AdaLN
    # modulation depends on its action alone: computed once per block here.
    W, predictor = model.cfg.history, model.predictor
    mods = [block.ada(acts) for block in predictor.blocks]  # per block (B, H-1+K, 6D)
    part = lambda lo, hi: [m[:, lo:hi] for m in mods]
    embs, preds, cache, cached = context_emb, [], None, 0
    for k in range(K):
        n = H + k  # tokens so far
        if n <= W:
            out, cache = predict_step(predictor, embs[:, cached:n], part(cached, n), cache, True)
            cached = n
        else:
            out, _ = predict_step(predictor, embs[:, n - W : n], part(n - W, n), None, True)
        nxt = model.pred_proj(out[:, -1]).unsqueeze(1)  # (B, 1, D)
        preds.append(nxt)
        embs = torch.cat([embs, nxt], 1)
    return torch.cat(preds, 1)  # (B, K, D)


def rollout_of(model):
    """The fastest eager rollout of `model`: `fast_rollout` for a LeWM, else its own
    `rollout` (an ensemble's runs its members' fast rollouts; test oracles have their own)."""
    if isinstance(model, LeWM):
        return functools.partial(fast_rollout, model)
    return model.rollout


def _fingerprint(model) -> tuple:
    """Changes when any parameter is replaced or updated in place (the in-place version
    counter is private to torch; without it, every call rebuilds: slower, still right)."""
    versions = [getattr(p, "_version", None) for p in model.parameters()]
    if any(v is None for v in versions):
        return (object(),)
    return tuple((p.data_ptr(), v) for p, v in zip(model.parameters(), versions))


def compiled_rollout(model):
    """`rollout_of(model)` through torch.compile, built once per model and kept on it. On CUDA it
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
        eager = rollout_of(model)

        def rollout(context_emb, context_actions, future_actions):
            return eager(context_emb, context_actions, future_actions)

        fn = (torch.compile(rollout, mode="reduce-overhead") if cuda
              else _frozen_compile(rollout))
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

"""The LeWM objective (docs/design.md §1.1; arXiv 2603.19312 §3.1, Eqs. 1-3): the
next-embedding prediction error plus lambda times SIGReg, the Sketched Isotropic Gaussian
Regulariser, and the collapse study's alternatives to SIGReg."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lewm.model.lewm import window_clips


def random_directions(dim: int, num: int, generator: torch.Generator | None = None,
                      device=None) -> torch.Tensor:
    """`num` random unit vectors in R^dim as the columns of a (dim, num) matrix."""
    A = torch.randn(dim, num, generator=generator, device="cpu").to(device)
    return A / A.norm(dim=0, keepdim=True)


class EmpiricalCF(torch.autograd.Function):
    """The empirical characteristic function of samples p (T, N, M) at knots t (K,): the means
    over N of cos(p t) and sin(p t), each (T, M, K).

    The same values as `torch.cos(p[..., None] * t).mean(1)` (and sin), computed for speed,
    since these are the largest tensors of a CPU step: laid out (T * M, N, K), so that the
    gradient (d cos(pt)/dp = -t sin(pt), d sin(pt)/dp = t cos(pt)) is one batched matrix
    product over the knots with the forward's own cos and sin, instead of autograd's second
    pass of both and its broadcast products (half the time on a CPU)."""

    @staticmethod
    def forward(ctx, p: torch.Tensor, t: torch.Tensor):
        T, N, M = p.shape
        K = t.shape[0]
        x = (p.transpose(1, 2).contiguous().unsqueeze(-1) * t).view(T * M, N, K)
        cos, sin = torch.cos(x), torch.sin(x)
        ctx.save_for_backward(cos, sin, t)
        return cos.mean(1).view(T, M, K), sin.mean(1).view(T, M, K)

    @staticmethod
    def backward(ctx, grad_re: torch.Tensor, grad_im: torch.Tensor):
        cos, sin, t = ctx.saved_tensors
        TM, N, K = cos.shape
        a = (grad_im * (t / N)).reshape(TM, K, 1)
        b = (grad_re * (t / N)).reshape(TM, K, 1)
        grad = torch.baddbmm(torch.bmm(cos, a), sin, b, alpha=-1)  # (T * M, N, 1)
        T = grad_re.shape[0]
        return grad.view(T, TM // T, N).transpose(1, 2), None


def epps_pulley(p: torch.Tensor, knots: int = 17, t_max: float = 3.0) -> torch.Tensor:
    """Epps-Pulley statistic of each 1-D sample against N(0, 1), as the authors compute it.

    p: (T, N, M) projections, N samples along dim 1. Returns (T, M): N times the weighted
    squared distance between the empirical characteristic function and exp(-t^2/2), with
    weight exp(-t^2/2), integrated over [-t_max, t_max]. The integrand is even in t, so the
    integral is twice the trapezoid rule on `knots` points over [0, t_max]: weights 2 dt at
    the interior knots and dt at the two ends (docs/design.md §1.1). For large Gaussian samples
    the expected value is about 1.06 per direction.
    """
    N = p.shape[1]
    t = torch.linspace(0.0, t_max, knots, device=p.device, dtype=p.dtype)  # (K,)
    gauss = torch.exp(-0.5 * t**2)  # (K,) the N(0, 1) characteristic function and the weight
    re, im = EmpiricalCF.apply(p, t)  # (T, M, K) each
    err = (re - gauss) ** 2 + im**2  # (T, M, K)
    dt = t_max / (knots - 1)
    weights = torch.full((knots,), 2 * dt, device=p.device, dtype=p.dtype)  # (K,)
    weights[0] = weights[-1] = dt
    return N * (err * gauss * weights).sum(-1)  # (T, M)


def gather_batch(z: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Concatenate `z` over data-parallel ranks along `dim`, keeping the gradient of every
    rank's share (the authors' code computes SIGReg per rank, which degrades multi-GPU runs)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    import warnings

    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated in favour of a private API; still correct
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(z.contiguous())
    return torch.cat(parts, dim=dim)


def sigreg(z: torch.Tensor, num_proj: int = 1024, generator: torch.Generator | None = None,
           knots: int = 17, t_max: float = 3.0, gather: bool = True) -> torch.Tensor:
    """SIGReg of embeddings z (T, B, D): Epps-Pulley along `num_proj` random unit directions,
    per time step over the global batch, averaged over directions and time steps.

    Draw the directions from a `generator` seeded identically on every rank (and fresh every
    step) so that all ranks project onto the same directions. `gather=False`: this rank's
    batch alone (for work that only one rank does, such as validation).
    """
    # fp32 even under bf16 autocast: cos/sin of t * p and the means over the batch lose the
    # statistic's small deviations from the null in bf16.
    with torch.autocast(z.device.type, enabled=False):
        z = gather_batch(z.float(), dim=1) if gather else z.float()  # (T, B_global, D)
        A = random_directions(z.shape[-1], num_proj, generator, z.device)  # (D, M)
        return epps_pulley(z @ A, knots, t_max).mean()


def vicreg_terms(z: torch.Tensor, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """VICReg's variance and covariance penalties (Bardes et al. 2022) of embeddings
    z (T, B, D), per time step over the batch, averaged over time steps.

    variance: mean over dimensions of relu(1 - std); covariance: the sum of squared
    off-diagonal covariances divided by D. The collapse study's baseline heuristic.
    """
    z = gather_batch(z.float(), dim=1)
    T, B, D = z.shape
    zc = z - z.mean(1, keepdim=True)  # (T, B, D)
    std = torch.sqrt(zc.var(1) + eps)  # (T, D)
    variance = torch.relu(1 - std).mean()
    cov = zc.transpose(1, 2) @ zc / (B - 1)  # (T, D, D)
    off = cov - torch.diag_embed(torch.diagonal(cov, dim1=1, dim2=2))
    covariance = (off**2).sum((1, 2)).mean() / D
    return variance, covariance


def loss_terms(model, pixels, actions, cfg, generator, target=None,
               embeddings: list | None = None) -> dict:
    """The two-term LeWM objective on one batch of clips (or a collapse-study variant):
    MSE(pred[:, t], emb[:, t + 1]) + lambda * SIGReg(emb), with gradients reaching both the
    predictions and their targets (no stop-gradient). Clips longer than history + 1 frames
    (`cfg.rollout_steps` > 0) add `rollout_loss`: the MSE of the model's autoregressive
    rollout from the history frames against the clip's later frames. Rows longer than
    the clip (`cfg.clips_per_window` > 1) are windows of consecutive clips, each frame
    encoded once: the loss is that of their clips. `cfg`: the TrainConfig (regularizer,
    lambd, num_proj, sigreg_over, vicreg_var, vicreg_cov, rollout_steps, clips_per_window).

    `target`: for the `ema` variant, the momentum copy whose embeddings, without gradient,
    are the prediction targets. `embeddings`: a list the clips' embeddings are appended to
    (for a term the caller adds, such as the invariance term).
    """
    T = cfg.clip_frames
    windows = pixels.shape[1] > T  # rows of cfg.window_frames frames, each K clips
    if windows:
        emb, pred = model(pixels, actions, T)  # the windows' clips: B * K rows from here on
        actions = window_clips(actions, T)
    else:
        emb, pred = model(pixels, actions)  # (B, T, D), (B, h, D) for h = history
    if embeddings is not None:
        embeddings.append(emb)
    h = pred.shape[1]
    if target is not None:
        with torch.no_grad():
            goals = target.encode(pixels)  # (B, T, D), stop-gradient
            goals = window_clips(goals, T) if windows else goals
    else:
        goals = emb
    pred_loss = F.mse_loss(pred.float(), goals[:, 1 : h + 1].float())
    terms = {"pred_loss": pred_loss}
    extra = emb.shape[1] - h - 1  # cfg.rollout_steps: frames scored on the model's own rollout
    pred_total = pred_loss
    if extra > 0:
        core = getattr(model, "module", model)  # under DDP or torch.compile
        # From the history frames, roll the predictor through the clip's next blocks on its
        # own predictions: the first output is the teacher-forced last one again, the others
        # predict frames h + 1 .. T - 1.
        rolled = core.rollout(emb[:, :h], actions[:, : h - 1], actions[:, h - 1 : h + extra])
        terms["rollout_loss"] = F.mse_loss(rolled[:, 1:].float(), goals[:, h + 1 :].float())
        pred_total = pred_loss + terms["rollout_loss"]
    z = emb.transpose(0, 1)  # (T, B, D): regularisers work per time step over the batch
    if cfg.regularizer == "sigreg":
        if cfg.sigreg_over == "clip":  # one sample of T * B embeddings
            z = z.reshape(1, -1, z.shape[-1])
        terms["sigreg"] = sigreg(z, cfg.num_proj, generator)
        terms["loss"] = pred_total + cfg.lambd * terms["sigreg"]
    elif cfg.regularizer == "vicreg":
        terms["variance"], terms["covariance"] = vicreg_terms(z)
        terms["loss"] = (pred_total + cfg.vicreg_var * terms["variance"]
                         + cfg.vicreg_cov * terms["covariance"])
    else:  # none, ema
        terms["loss"] = pred_total
    return terms

"""The cross-entropy method over action sequences, batched over problems and candidates
(docs/design.md §1.4; arXiv 2603.19312 App. B, Algorithm 2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lewm.errors import LewmError

COSTS = ("final", "path", "ramp")
"""how a candidate's predicted embeddings are scored against the goal (`CEMConfig.cost`)"""


@dataclass(frozen=True)
class CEMConfig:
    """CEM settings; defaults are the paper's (docs/design.md §1.4)."""

    samples: int = 300
    """candidate action sequences per problem and iteration"""
    elites: int = 30
    """lowest-cost candidates that refit the sampling distribution"""
    iterations: int = 30
    """refits per plan"""
    horizon: int = 5
    """action blocks per candidate sequence"""
    init_std: float = 1.0
    """initial std of the Gaussian, in z-scored action space"""
    tail_std: float | None = None
    """initial std of the blocks a re-plan takes over from the plan being executed (its
    unexecuted tail, with `shrink` or `warm_start`); None: init_std. Smaller, each re-plan
    refines the plan the agent is following from the frame just reached instead of
    searching afresh around it (on Push-T 0.25 plans 83 % over five 50-episode sets against
    78 % at 1.0; docs/worlds.md)"""
    min_std: float = 0.0
    """floor on the std after each refit"""
    warm_start: bool = False
    """start from the previous plan's tail (shifted by the executed blocks) instead of zeros"""
    shrink: bool = False
    """keep each plan's end in time (a shrinking horizon): every replanning searches only
    the blocks left until the end of the first plan (horizon minus the blocks executed
    since), starting from that plan's tail, so that each new frame corrects the same plan
    towards the goal instead of pushing its arrival 'horizon' blocks further out; when the
    blocks run out, a new plan of the full horizon starts. Without replanning inside a plan
    (the default) it changes nothing"""
    unbiased_std: bool = True
    """refit the std with Bessel's correction (n - 1), as the authors do; False: divide by n"""
    clip: bool = False
    """clip candidates to the (z-scored) action box before the model sees them; the authors
    do not, so the model may be asked about actions the env would clip"""
    context: int = 1
    """frames of context at each re-plan: 1, the current frame only, as in the authors'
    evaluation; up to the model's history, with the blocks executed between them"""
    cost: str = "final"
    """what a candidate is scored on: final, the squared latent distance between its last
    predicted embedding and the goal's (the paper's); path, that distance averaged over every
    predicted block, which prefers plans that arrive early and stay (when plans are redone
    often, the final cost keeps pushing the arrival to the end of the horizon); ramp, that
    distance weighted by the block's index (1, 2, ..., H over their sum), between the two:
    every block counts, the later ones most"""
    noise_beta: float = 0.0
    """colour of the candidates' noise along each plan's time line of env steps (horizon x
    frameskip), as in iCEM (Pinneri et al. 2020): power spectral density 1/f^beta, so 0 is
    the paper's white noise, 1 pink (neighbouring steps correlate at about 0.55, as the
    collection policies' actions do) and 2 brown (0.86); every step keeps unit variance"""
    keep_elites: float = 0.0
    """fraction of an iteration's elites carried into the next iteration's candidates (iCEM
    keeps 0.3), so that good sequences found early are not lost to resampling"""
    disagreement: float = 0.0
    """with an ensemble of models (`lewm eval --ensemble`): the spread of the members' costs
    of a candidate (their std) times this weight and the number of members, added to the
    summed cost, so that a plan the members disagree about scores worse; 0: the sum alone"""
    precision: str = "fp32"
    """arithmetic of the model's rollouts: fp32, or bf16 (autocast; costs compared in fp32):
    faster on GPUs and on CPUs with AMX, with slightly different plans that may also vary
    with the number of episodes planned together (fp32 plans do not)"""
    compile: bool = False
    """run the model's rollouts through torch.compile (CUDA graphs on GPUs): faster plans
    after a first one that pays the compilation (tens of seconds per model and batch shape);
    costs equal the eager ones to float rounding"""

    def __post_init__(self):
        for name in ("samples", "elites", "iterations"):
            if getattr(self, name) < 1:
                raise LewmError(f"CEM {name} must be >= 1, got {getattr(self, name)}")
        if self.horizon < 1:
            raise LewmError(f"planning horizon must be >= 1, got {self.horizon}")
        if self.elites > self.samples:
            raise LewmError(f"CEM elites ({self.elites}) cannot exceed samples ({self.samples})")
        if self.context < 1:
            raise LewmError(f"planning context must be >= 1 frame, got {self.context}")
        if self.cost not in COSTS:
            raise LewmError(f"planning cost must be one of {', '.join(COSTS)}, got {self.cost!r}")
        if not self.noise_beta >= 0:
            raise LewmError(f"CEM noise_beta must be >= 0, got {self.noise_beta}")
        if not 0 <= self.keep_elites <= 1:
            raise LewmError(f"CEM keep_elites must be a fraction in [0, 1], got "
                            f"{self.keep_elites}")
        if not self.disagreement >= 0:
            raise LewmError(f"planning disagreement weight must be >= 0, got "
                            f"{self.disagreement}")
        if self.precision not in ("fp32", "bf16"):
            raise LewmError(f"planning precision must be fp32 or bf16, got {self.precision!r}")
        if not self.init_std > 0 or self.min_std < 0:
            raise LewmError(f"CEM init_std must be > 0 and min_std >= 0, got {self.init_std}, "
                            f"{self.min_std}")
        if self.tail_std is not None and not self.tail_std > 0:
            raise LewmError(f"CEM tail_std must be > 0 (or unset), got {self.tail_std}")


def episode_generators(seed: int, episodes) -> list[torch.Generator]:
    """One CEM noise generator per episode, seeded by (seed, episode index): an episode's plans
    do not depend on which other episodes are planned beside it."""
    seeds = (np.random.SeedSequence([seed, i]).generate_state(1)[0] for i in episodes)
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def colour_filter(steps: int, beta: float) -> torch.Tensor:
    """(steps, steps) matrix M such that white noise x (..., steps) makes x @ M noise of power
    spectral density 1/f^beta along its last axis (circularly, as iCEM's generator does),
    with unit variance at every step."""
    if steps == 1 or beta == 0:
        return torch.eye(steps)
    f = torch.fft.rfftfreq(steps, dtype=torch.float64)
    f[0] = f[1]  # the constant component gets the lowest frequency's gain, not an infinite one
    basis = torch.fft.rfft(torch.eye(steps, dtype=torch.float64), dim=-1)
    M = torch.fft.irfft(basis * f ** (-beta / 2), n=steps, dim=-1)  # row t: e_t filtered
    return (M / M.norm(dim=0, keepdim=True)).float()


def cem(cost: Callable[[torch.Tensor], torch.Tensor], batch: int, action_dim: int,
        cfg: CEMConfig, generator: torch.Generator | list[torch.Generator], device="cpu",
        init_mean: torch.Tensor | None = None, low: torch.Tensor | None = None,
        high: torch.Tensor | None = None, substeps: int = 1,
        tail: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise `cost` over action sequences for `batch` independent problems at once.

    cost: maps candidates (batch, samples, horizon, action_dim) to costs (batch, samples); it
        is called once per iteration with every problem's candidates.
    generator: draws the noise of every problem, or a list of `batch` generators, one per
        problem (see `episode_generators`), so that a problem's answer does not depend on the
        batch it is solved in.
    init_mean: (batch, horizon, action_dim) starting mean (zeros when None).
    low, high: (action_dim,) bounds the candidates are clipped to when `cfg.clip` (e.g. the
        z-scored image of the environment's action box), so the model is never asked about
        actions it cannot have seen.
    substeps: env steps per action block (the frameskip): a block is `substeps` actions of
        action_dim / substeps, laid out step after step; `cfg.noise_beta` colours the noise
        along the horizon x substeps steps of a candidate.
    tail: leading blocks of `init_mean` taken over from a plan being executed; they start at
        `cfg.tail_std` instead of `cfg.init_std` (when it is set).
    Returns (plan (batch, horizon, action_dim): the final mean; cost of the best candidate of
    the last iteration (batch,)).
    """
    shape = (batch, cfg.horizon, action_dim)
    mean = torch.zeros(shape, device=device) if init_mean is None else init_mean.clone()
    std = torch.full(shape, cfg.init_std, device=device)
    if tail and cfg.tail_std is not None:
        std[:, :tail] = cfg.tail_std
    per_problem = isinstance(generator, (list, tuple))
    if per_problem and len(generator) != batch:
        raise ValueError(f"cem: {len(generator)} generators for {batch} problems")
    if action_dim % substeps:
        raise ValueError(f"cem: blocks of {action_dim} values are not {substeps} env steps")
    steps, raw = cfg.horizon * substeps, action_dim // substeps
    colour = colour_filter(steps, cfg.noise_beta) if cfg.noise_beta > 0 else None
    kept = min(round(cfg.keep_elites * cfg.elites), cfg.samples - 1)
    elites = None
    for _ in range(cfg.iterations):
        if per_problem:
            noise = torch.stack([torch.randn((cfg.samples, *shape[1:]), generator=g)
                                 for g in generator])
        else:
            noise = torch.randn((batch, cfg.samples, *shape[1:]), generator=generator)
        if colour is not None:  # along each candidate's time line of env steps
            timeline = noise.reshape(batch, cfg.samples, steps, raw).transpose(2, 3)
            noise = (timeline @ colour).transpose(2, 3).reshape(noise.shape)
        cand = mean.unsqueeze(1) + std.unsqueeze(1) * noise.to(device)  # (batch, S, H, a)
        # The current mean is always a candidate, so the plan never gets worse by resampling.
        cand[:, 0] = mean
        if kept and elites is not None:  # the best of the last iteration's elites, again
            cand[:, 1 : kept + 1] = elites[:, :kept]
        if cfg.clip and low is not None:
            cand = torch.maximum(torch.minimum(cand, high), low)
        costs = cost(cand)  # (batch, S)
        best, idx = costs.topk(cfg.elites, dim=1, largest=False)  # (batch, E)
        pick = idx[:, :, None, None].expand(-1, -1, *shape[1:])
        elites = cand.gather(1, pick)  # (batch, E, H, a)
        mean = elites.mean(1)
        std = elites.std(1, unbiased=cfg.unbiased_std).clamp_min(cfg.min_std)
    return mean, best[:, 0]

"""The cross-entropy method over action sequences, batched over problems and candidates
(docs/design.md §1.4; arXiv 2603.19312 App. B, Algorithm 2)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lewm.planning.base import Plan, PlanRequest, PlanSetup
from lewm.planning.config import CEMConfig, PlanConfig
from lewm.planning.cost import latent_cost


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
        high: torch.Tensor | None = None, substeps: int = 1, horizon: int = 5,
        carried: int = 0, carried_std: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise `cost` over action sequences of `horizon` blocks for `batch` independent
    problems at once.

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
    carried: leading blocks of `init_mean` taken over from a plan being executed; they start
        at `carried_std` instead of `cfg.init_std` (when it is set).
    Returns (plan (batch, horizon, action_dim): the final mean; cost of the best candidate of
    the last iteration (batch,)).
    """
    shape = (batch, horizon, action_dim)
    mean = torch.zeros(shape, device=device) if init_mean is None else init_mean.clone()
    std = torch.full(shape, cfg.init_std, device=device)
    if carried and carried_std is not None:
        std[:, :carried] = carried_std
    per_problem = isinstance(generator, (list, tuple))
    if per_problem and len(generator) != batch:
        raise ValueError(f"cem: {len(generator)} generators for {batch} problems")
    if action_dim % substeps:
        raise ValueError(f"cem: blocks of {action_dim} values are not {substeps} env steps")
    steps, raw = horizon * substeps, action_dim // substeps
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


class CEMPlanner:
    """The paper's planner: CEM towards the goal embedding, every episode of a re-plan in one
    batched search. Each episode draws its noise from its own generator, seeded by the
    evaluation's seed and the episode's index, and kept across its re-plans."""

    def __init__(self, cfg: PlanConfig, model, setup: PlanSetup):
        self.cfg, self.model, self.setup = cfg, model, setup
        self.generators: dict[int, torch.Generator] = {}

    def plan(self, request: PlanRequest) -> Plan:
        return Plan(self.search(request, request.goal), request.goal)

    def search(self, request: PlanRequest, target: torch.Tensor) -> torch.Tensor:
        """CEM's plan (b, horizon, blk) towards `target` (b, D) from the request's context."""
        cfg, model, low = self.cfg, self.model, self.setup.low.to(self.model.device)
        for e in request.episodes:
            if e not in self.generators:
                self.generators[e] = episode_generators(self.setup.seed, [e])[0]
        b, blk = len(request.episodes), low.numel()
        init, carried = None, 0
        if request.carried is not None:
            carried = request.carried.shape[1]
            init = request.carried.new_zeros(b, request.horizon, blk)
            init[:, :carried] = request.carried
        cost = latent_cost(model, request.context, request.context_actions, target, cfg.cost,
                           cfg.runtime)
        blocks, _ = cem(cost, b, blk, cfg.solver, [self.generators[e] for e in request.episodes],
                        model.device, init, low, self.setup.high.to(model.device),
                        substeps=model.cfg.frameskip, horizon=request.horizon, carried=carried,
                        carried_std=cfg.mpc.carry_std)
        return blocks

"""Random shooting: a planner written against lewm.planning's interface alone, as any new
planner would be (tests/test_planners.py registers it in one line and runs `lewm eval`).

It draws `solver.samples` action sequences once per re-plan, scores them with the latent
cost, and returns the cheapest: CEM without the refits."""

from __future__ import annotations

import torch

from lewm.planning.base import Plan, PlanRequest, PlanSetup
from lewm.planning.config import PlanConfig
from lewm.planning.cost import latent_cost


class RandomShooting:
    def __init__(self, cfg: PlanConfig, model, setup: PlanSetup):
        self.cfg, self.model, self.setup = cfg, model, setup
        self.generator = torch.Generator().manual_seed(setup.seed)
        self.calls = 0

    def plan(self, request: PlanRequest) -> Plan:
        self.calls += 1
        b, blk = len(request.episodes), self.setup.low.numel()
        cand = torch.randn(b, self.cfg.solver.samples, request.horizon, blk,
                           generator=self.generator).to(self.model.device)
        if request.carried is not None:  # the plan being followed is one of the candidates
            cand[:, 0, : request.carried.shape[1]] = request.carried
        cost = latent_cost(self.model, request.context, request.context_actions, request.goal,
                           self.cfg.cost, self.cfg.runtime)(cand)
        return Plan(cand[torch.arange(b), cost.argmin(1)], request.goal)

    def report(self) -> dict:
        return {"shooting": {"calls": self.calls}}

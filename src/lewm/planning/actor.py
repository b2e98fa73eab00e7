"""`--planner actor`: act with the run's learned actor (lewm.actor; `lewm train-actor RUN`)
instead of searching. Each decision is one actor call on the current embedding, the one a
block before it (when the MPC gives two frames of context) and the goal's; a plan longer than
one block continues through the world model, the actor acting on the predicted embeddings,
so re-planning after every block (`--replan 1`) is the closed loop and longer periods act on
the model's imagination in between.

`--planner guarded`: the actor's plan checked by the world model. A small CEM (the run's
solver settings, e.g. `--samples 128 --iterations 3`) searches around the actor's plan,
starting at std `--carry-std` (the solver's init_std when unset), and the plan executed is
whichever of the two the world model scores lower, so the search can only improve on the
actor by the model's own measure.

With `--ensemble` the first run's actor proposes (on its model's part of the ensemble's
embeddings) and the ensemble scores; with `--planner graph --towards actor` the actor
reaches the graph's subgoals."""

from __future__ import annotations

import dataclasses

import torch

from lewm.errors import LewmError
from lewm.planning.base import Plan, PlanRequest, PlanSetup
from lewm.planning.config import PlanConfig
from lewm.planning.fast import rollout_of


class ActorPlanner:
    def __init__(self, cfg: PlanConfig, model, setup: PlanSetup):
        from lewm.actor.net import load_actor

        if setup.run_dir is None:
            raise LewmError("--planner actor needs the run directory that holds the actor")
        net, meta = load_actor(setup.run_dir, (model.card.meta or {}).get("model_sha256"),
                               model.device)
        self._use(cfg, model, setup, net, meta)

    @classmethod
    def with_net(cls, cfg: PlanConfig, model, setup: PlanSetup, net) -> ActorPlanner:
        """A planner acting with `net` (an Actor) rather than a run's saved actor."""
        planner = cls.__new__(cls)
        planner._use(cfg, model, setup, net, {"block_dim": net.block_dim})
        return planner

    def _use(self, cfg, model, setup, net, meta) -> None:
        from lewm.planning.ensemble import Ensemble

        self.cfg, self.model, self.setup, self.net, self.meta = cfg, model, setup, net, meta
        # With --ensemble the actor is the first run's and reads that member's part of the
        # ensemble's embeddings; the other members only judge plans (guarded).
        self.part = model.lead_part if isinstance(model, Ensemble) else (lambda z: z)
        if self.meta["block_dim"] != setup.low.numel():
            raise LewmError(f"{setup.run_dir}: its actor acts in {self.meta['block_dim']}-D "
                            f"blocks, the model in {setup.low.numel()}-D ones; rerun "
                            "`lewm train-actor --force`")

    @torch.no_grad()
    def plan(self, request: PlanRequest) -> Plan:
        ctx, acts = request.context, request.context_actions
        low, high = self.setup.low.to(ctx.device), self.setup.high.to(ctx.device)
        z = ctx[:, -1]
        prev = ctx[:, -2] if ctx.shape[1] > 1 else z
        blocks = []
        for k in range(request.horizon):
            act = self.net(self.part(z), self.part(prev), self.part(request.goal))
            blocks.append(torch.maximum(torch.minimum(act, high), low))
            if k + 1 < request.horizon:  # the next decision, on the model's prediction
                predicted = rollout_of(self.model)(ctx, acts, torch.stack(blocks, 1))
                prev, z = z, predicted[:, -1]
        return Plan(torch.stack(blocks, 1), request.goal)


class GuardedPlanner(ActorPlanner):
    def _use(self, cfg, model, setup, net, meta) -> None:
        from lewm.planning.cem import CEMPlanner

        super()._use(cfg, model, setup, net, meta)
        self.search = CEMPlanner(cfg, model, setup)

    @torch.no_grad()
    def plan(self, request: PlanRequest) -> Plan:
        from lewm.planning.cost import latent_cost

        proposal = super().plan(request).blocks  # (b, H, blk)
        searched = self.search.search(dataclasses.replace(request, carried=proposal),
                                      request.goal)
        cost = latent_cost(self.model, request.context, request.context_actions, request.goal,
                           self.cfg.cost, self.cfg.runtime)
        both = torch.stack([proposal, searched], 1)  # (b, 2, H, blk)
        pick = cost(both).argmin(1)
        return Plan(both[torch.arange(len(pick)), pick], request.goal)

"""Planning with several world models at once: an ensemble of runs trained on the same data
(different seeds), seen by the planner as one model.

Why: CEM exploits a learned model, finding action sequences that the model predicts reach
the goal and that do not (docs/log.md, cube-cpu). Models trained from other
seeds make different errors, so a plan that only one of them is wrong about scores badly
under the others. The ensemble's embedding is its members' embeddings side by side, and
its rollout is each member's rollout on its own part; the planner's squared distance to
the goal embedding is then the sum of the members' own costs, each member judging the plan
in its own latent space (the latent spaces of different seeds are not aligned, so members
are never mixed within one distance).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lewm.errors import LewmError
from lewm.planning.fast import fast_rollout


class Ensemble(nn.Module):
    """Members (trained LeWM models with cards) behind the planner's model interface:
    `encode`, `rollout`, `cfg`, `card`/`trained`, `device`. The first member leads: its
    config, card (world, data, action statistics) and device are the ensemble's, and
    actions arrive z-scored with its statistics."""

    def __init__(self, members, names=None):
        super().__init__()
        if not members:
            raise LewmError("an ensemble needs at least one model")
        names = list(names or [f"model {i}" for i in range(len(members))])
        lead, lead_card = members[0], members[0].trained_card
        for m, name in zip(members[1:], names[1:]):
            card = m.trained_card
            for what, mine, theirs in (
                ("world", card.world, lead_card.world),
                ("image size", card.image_size, lead_card.image_size),
                ("frameskip", m.cfg.frameskip, lead.cfg.frameskip),
                ("action dimension", m.cfg.action_dim, lead.cfg.action_dim),
                ("history", m.cfg.history, lead.cfg.history),
            ):
                if mine != theirs:
                    raise LewmError(f"{name}: {what} {mine} differs from {names[0]}'s "
                                    f"({theirs}); an ensemble's models must share it")
            if m.device != lead.device:
                raise LewmError(f"{name}: on {m.device}, {names[0]} on {lead.device}")
        self.members = nn.ModuleList(members)
        self.names = names
        self.cfg = lead.cfg
        self.card = lead_card
        self.dims = [m.cfg.embed_dim for m in members]
        # Each member reads actions z-scored with its own training split's statistics:
        # z_member = z_lead * scale + shift, per dimension of an action block.
        fs = lead.cfg.frameskip
        lead_z = lead_card.action.blocks(fs)
        self._convert = []
        for m in members:
            z = m.trained_card.action.blocks(fs)
            scale = torch.from_numpy(np.asarray(lead_z.std / z.std, np.float32))
            shift = torch.from_numpy(np.asarray((lead_z.mean - z.mean) / z.std, np.float32))
            self._convert.append((scale.to(lead.device), shift.to(lead.device)))

    @property
    def trained_card(self):
        return self.card

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    def encode(self, pixels) -> torch.Tensor:
        """(B, T, H, W, 3) images -> (B, T, sum of the members' D)."""
        return torch.cat([m.encode(pixels) for m in self.members], -1)

    def _actions(self, i: int, a: torch.Tensor | None) -> torch.Tensor | None:
        if a is None:
            return None
        scale, shift = self._convert[i]
        return a * scale.to(a.dtype) + shift.to(a.dtype)

    def rollout(self, context_emb: torch.Tensor, context_actions: torch.Tensor | None,
                future_actions: torch.Tensor) -> torch.Tensor:
        """As `LeWM.rollout`, each member on its own slice of the embeddings (through its
        fast rollout: this is for planning)."""
        parts = torch.split(context_emb, self.dims, -1)
        return torch.cat([
            fast_rollout(m, ctx, self._actions(i, context_actions),
                         self._actions(i, future_actions))
            for i, (m, ctx) in enumerate(zip(self.members, parts))], -1)

    def lead_part(self, emb: torch.Tensor) -> torch.Tensor:
        """The lead member's slice of ensemble embeddings (..., sum D) -> (..., D0), e.g. for
        its decoder."""
        return emb[..., : self.dims[0]]

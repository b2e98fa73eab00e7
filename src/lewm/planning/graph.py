"""Subgoals from a graph over recorded frames, for goals that flat CEM cannot reach.

CEM minimises the latent distance to the goal over a 5-block horizon. Behind a wall, every
short plan that moves towards the goal's embedding ends against the wall, and the plans
that would go round it look worse than staying. A route through the training data fixes
this: recorded frames are nodes, one action block apart along their episodes, and a frame
is also joined to frames of other episodes that the model predicts it can reach in one
block: some of `probes` random action blocks, rolled out one block from it, lands within
the model's own one-block prediction error of them. (Joining frames merely close in latent
space would join frames on either side of a thin wall.) The shortest path from the frame
nearest the current observation to the frame nearest the goal is a chain of reachable
subgoals; CEM (or the run's actor, `--towards actor`) plans towards the one `lookahead`
blocks along it, re-localising at every re-plan, and towards the goal itself once the route
is shorter than that.

Embeddings are the model's own, so the graph is built for one model and one dataset.
"""

from __future__ import annotations

import dataclasses
import heapq
import time

import numpy as np
import torch

from lewm.model.embed import embed_frames
from lewm.planning.base import Plan, PlanRequest, PlanSetup
from lewm.planning.config import GraphConfig, PlanConfig
from lewm.planning.fast import rollout_of
from lewm.validate import check_memory


class LatentGraph:
    """Nodes: embeddings (N, D) of recorded frames; edges weighted by latent distance."""

    def __init__(self, emb: torch.Tensor, episode: np.ndarray, cfg: GraphConfig,
                 successors: torch.Tensor, tolerance: float, frames: np.ndarray | None = None):
        """emb: (N, D) node embeddings, episode by episode in time order (one block apart);
        episode: (N,) episode id of each node; successors: (N, K, D) predicted embeddings one
        random block after each node; tolerance: how close a predicted successor must come
        to a node to join it; frames: (N, H, W, 3) the nodes' images, to show."""
        self.emb, self.cfg, self.frames = emb.float(), cfg, frames
        self.tolerance = tolerance
        n = len(emb)
        self.adj: list[dict[int, float]] = [{} for _ in range(n)]
        same = episode[1:] == episode[:-1]
        steps = (self.emb[1:] - self.emb[:-1]).norm(dim=1)  # (N - 1,)
        for i in np.flatnonzero(same):
            self._join(i, i + 1, float(steps[i]))
        k = min(cfg.neighbours + 1, n)
        for lo in range(0, n, 512):  # candidates: the k nearest nodes, by blocks of rows
            hi = min(lo + 512, n)
            idx = torch.cdist(self.emb[lo:hi], self.emb).topk(k, dim=1, largest=False)[1]
            cand = self.emb[idx]  # (b, k, D)
            # distance from each candidate to the nearest predicted successor of the node
            reach = torch.cdist(cand, successors[lo:hi].float()).amin(2)  # (b, k)
            direct = (cand - self.emb[lo:hi, None]).norm(dim=2)  # (b, k)
            for r, (js, ok, d) in enumerate(zip(idx.tolist(), (reach <= tolerance).tolist(),
                                                direct.tolist())):
                i = lo + r
                for j, good, dj in zip(js, ok, d):
                    if good and j != i and episode[j] != episode[i]:
                        self._join(i, j, dj)

    def _join(self, i: int, j: int, w: float):
        w = max(w, 1e-6)
        self.adj[i][j] = min(w, self.adj[i].get(j, np.inf))
        self.adj[j][i] = self.adj[i][j]

    def nearest(self, z: torch.Tensor) -> np.ndarray:
        """Index of the node nearest each embedding of z (b, D)."""
        return torch.cdist(z.float().cpu(), self.emb).argmin(1).numpy()

    def towards(self, target: int) -> tuple[np.ndarray, np.ndarray]:
        """Dijkstra from `target`: (distance of every node to it, next node on its way)."""
        n = len(self.adj)
        dist = np.full(n, np.inf)
        nxt = np.full(n, -1)
        dist[target] = 0.0
        heap = [(0.0, target)]
        while heap:
            d, i = heapq.heappop(heap)
            if d > dist[i]:
                continue
            for j, w in self.adj[i].items():
                if d + w < dist[j]:
                    dist[j], nxt[j] = d + w, i
                    heapq.heappush(heap, (d + w, j))
        return dist, nxt


class GraphPlanner:
    """Subgoals for another planner: per episode, the route from the current frame's node to
    the goal's node, and the subgoal `lookahead` blocks along it (see the module docstring),
    reached by the planner `graph.towards` names (CEM, or the run's actor). The graph is
    built once, over the training episodes of the run (`setup.data_path`)."""

    def __init__(self, cfg: PlanConfig, model, setup: PlanSetup):
        from lewm.data.clips import EpisodeData
        from lewm.planning.registry import make_planner

        self.cfg = cfg
        self.towards = make_planner(dataclasses.replace(cfg, planner=cfg.graph.towards), model,
                                    setup)
        data = EpisodeData(setup.data_path or model.card.data["path"],
                           camera=model.card.data.get("camera"))
        val = set(model.card.data.get("val_episodes") or [])
        train = [e for e in range(data.num_episodes) if e not in val] or list(
            range(data.num_episodes))
        start = time.perf_counter()
        self.graph = build_graph(model, data, train, cfg.graph, setup.seed)
        self.build_seconds = time.perf_counter() - start
        data.close()
        self.routes = {}  # goal node -> (dist, next)

    def _route(self, goal_node: int):
        if goal_node not in self.routes:
            self.routes[goal_node] = self.graph.towards(goal_node)
        return self.routes[goal_node]

    def subgoals(self, now: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, list]:
        """now, goal (b, D): current and goal embeddings. Returns (the embeddings to plan
        towards (b, D), for each the node index or -1 for the goal itself)."""
        graph, lookahead = self.graph, self.cfg.graph.lookahead
        out, nodes = [], []
        for g, n, target in zip(graph.nearest(goal), graph.nearest(now), goal):
            dist, nxt = self._route(int(g))
            node, hops = int(n), 0
            while np.isfinite(dist[node]) and nxt[node] >= 0 and hops < lookahead:
                node, hops = int(nxt[node]), hops + 1
            if not np.isfinite(dist[int(n)]) or hops < lookahead:
                out.append(target)  # near the goal, or no route: the goal itself
                nodes.append(-1)
            else:
                out.append(graph.emb[node].to(goal.device))
                nodes.append(node)
        return torch.stack(out), nodes

    def plan(self, request: PlanRequest) -> Plan:
        target, nodes = self.subgoals(request.context[:, -1], request.goal)
        frames = [None if n < 0 or self.graph.frames is None else self.graph.frames[n]
                  for n in nodes]
        blocks = self.towards.plan(dataclasses.replace(request, goal=target)).blocks
        return Plan(blocks, target, frames)

    def report(self) -> dict:
        """What eval.json records about the graph."""
        g = self.graph
        return {"graph": {"nodes": len(g.adj), "edges": sum(map(len, g.adj)) // 2,
                          "join_tolerance": g.tolerance, "build_s": self.build_seconds,
                          "config": dataclasses.asdict(g.cfg)}}


@torch.no_grad()
def build_graph(model, data, episodes, cfg: GraphConfig, seed: int = 0) -> LatentGraph:
    """The graph over frames one action block apart of randomly drawn `episodes` of an
    EpisodeData, until `cfg.nodes` frames (see the module docstring)."""
    fs, A = model.cfg.frameskip, model.cfg.action_dim
    D = model.cfg.embed_dim
    check_memory(cfg.nodes * cfg.probes * (D + fs * A) * 4, f"the graph planner's {cfg.probes} "
                 f"probes of {cfg.nodes} nodes", "lower --probes or --nodes")
    rng = np.random.default_rng(seed)
    rows, ep_of, count = [], [], 0
    for e in rng.permutation(np.asarray(episodes)):
        start, length = int(data.ep_offset[e]), int(data.ep_len[e])
        r = (start + np.arange(0, length, fs))[: cfg.nodes - count]
        rows.append(r)
        ep_of.append(np.full(len(r), e))
        count += len(r)
        if count >= cfg.nodes:
            break
    rows_all, ep_all = np.concatenate(rows), np.concatenate(ep_of)
    order = np.argsort(rows_all, kind="stable")  # sorted reads; episodes stay contiguous
    rows_all, ep_all = rows_all[order], ep_all[order]
    emb = embed_frames(model, data.pixels, rows_all).cpu()  # (N, D)
    ctx = emb[:, None].to(model.device)

    rollout = rollout_of(model)

    def one_block(first: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        out = [rollout(first[i : i + 4096], None, blocks[i : i + 4096, None])[:, 0]
               for i in range(0, len(first), 4096)]
        return torch.cat(out).float().cpu()

    # The model's one-block error on the recorded transitions sets the tolerance.
    z = model.trained_card.action.blocks(fs)
    nxt = np.flatnonzero(ep_all[1:] == ep_all[:-1])
    acts = data.action[rows_all[nxt][:, None] + np.arange(fs)].reshape(len(nxt), fs * A)
    acts = torch.from_numpy(np.nan_to_num(z.to_z(acts))).float().to(model.device)
    err = (one_block(ctx[nxt], acts) - emb[nxt + 1]).norm(dim=1)
    steps = (emb[nxt + 1] - emb[nxt]).norm(dim=1)
    tolerance = float(torch.quantile(err, 0.9) + 0.25 * steps.median()) if len(nxt) else 0.0
    gen = torch.Generator().manual_seed(seed)
    probe = torch.randn(len(emb) * cfg.probes, fs * A, generator=gen).to(model.device)
    succ = one_block(ctx.repeat_interleave(cfg.probes, 0), probe).view(len(emb), cfg.probes, -1)
    frames = np.asarray(data.pixels[rows_all])
    return LatentGraph(emb, ep_all, cfg, succ, tolerance, frames)

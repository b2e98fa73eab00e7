"""How a run plans: one typed `PlanConfig`, in parts (the solver, re-plan control, the cost,
the runtime, the graph planner). Imports nothing heavy: the CLI builds its flags from it.

Runs written before it kept their planning as `key=value` strings (`TrainConfig.plan`);
`plan_from_strings` converts them, so old run directories plan exactly as before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lewm.errors import LewmError
from lewm.validate import check_numbers

COSTS = ("final", "path", "ramp")
"""how a candidate's predicted embeddings are scored against the goal (`CostConfig.cost`)"""
CARRY = ("none", "warm", "shrink")
"""what a re-plan takes over from the plan being executed (`MPCConfig.carry`)"""


@dataclass(frozen=True)
class CEMConfig:
    """The cross-entropy method's own settings; defaults are the paper's (docs/design.md
    §1.4)."""

    samples: int = 300
    """candidate action sequences per problem and iteration"""
    elites: int = 30
    """lowest-cost candidates that refit the sampling distribution"""
    iterations: int = 30
    """refits per plan"""
    init_std: float = 1.0
    """initial std of the Gaussian, in z-scored action space"""
    min_std: float = 0.0
    """floor on the std after each refit"""
    unbiased_std: bool = True
    """refit the std with Bessel's correction (n - 1), as the authors do; False: divide by n"""
    clip: bool = False
    """clip candidates to the (z-scored) action box before the model sees them; the authors
    do not, so the model may be asked about actions the env would clip"""
    noise_beta: float = 0.0
    """colour of the candidates' noise along each plan's time line of env steps, as in iCEM
    (Pinneri et al. 2020): power spectral density 1/f^beta, so 0 is the paper's white
    noise, 1 pink and 2 brown; every step keeps unit variance"""
    keep_elites: float = 0.0
    """fraction of an iteration's elites carried into the next iteration's candidates (iCEM
    keeps 0.3), so that good sequences found early are not lost to resampling"""

    def __post_init__(self):
        for name in ("samples", "elites", "iterations"):
            if getattr(self, name) < 1:
                raise LewmError(f"CEM {name} must be >= 1, got {getattr(self, name)}")
        if self.elites > self.samples:
            raise LewmError(f"CEM elites ({self.elites}) cannot exceed samples ({self.samples})")
        if not self.noise_beta >= 0:
            raise LewmError(f"CEM noise_beta must be >= 0, got {self.noise_beta}")
        if not 0 <= self.keep_elites <= 1:
            raise LewmError(f"CEM keep_elites must be a fraction in [0, 1], got "
                            f"{self.keep_elites}")
        if not self.init_std > 0 or self.min_std < 0:
            raise LewmError(f"CEM init_std must be > 0 and min_std >= 0, got {self.init_std}, "
                            f"{self.min_std}")
        check_numbers(self)  # what the checks above leave: NaN, inf


@dataclass(frozen=True)
class MPCConfig:
    """Receding-horizon control: how long a plan is, when it is redone and what a re-plan
    starts from (docs/design.md §1.4: plan 5 blocks, execute them all, re-plan)."""

    horizon: int = 5
    """action blocks per plan"""
    replan: int = 0
    """action blocks executed before re-planning (0: the whole plan)"""
    context: int = 1
    """frames of context at each re-plan: 1, the current frame only, as in the authors'
    evaluation; up to the model's history, with the blocks executed between them"""
    carry: str = "none"
    """what a re-plan takes over from the plan being executed: none (plan afresh from
    zeros, the paper's); warm (start from its unexecuted tail, then zeros); shrink (keep the
    plan's end in time: search only the blocks left until the end of the first plan, from
    its tail, so each new frame corrects the same plan instead of pushing its arrival
    further out; a new full plan starts when the blocks run out)"""
    carry_std: float | None = None
    """initial std of the blocks a re-plan takes over (with warm or shrink); None: the
    solver's init_std. Smaller, a re-plan refines the plan being followed instead of
    searching afresh around it"""

    def __post_init__(self):
        if self.horizon < 1:
            raise LewmError(f"planning horizon must be >= 1, got {self.horizon}")
        if self.replan < 0:
            raise LewmError(f"--replan must be >= 0, got {self.replan}")
        if self.replan > self.horizon:
            raise LewmError(f"--replan {self.replan} exceeds the plan's --horizon "
                            f"{self.horizon} blocks")
        if self.context < 1:
            raise LewmError(f"planning context must be >= 1 frame, got {self.context}")
        if self.carry not in CARRY:
            raise LewmError(f"--carry must be one of {', '.join(CARRY)}, got {self.carry!r}")
        if self.carry_std is not None and not self.carry_std > 0:
            raise LewmError(f"--carry-std must be > 0 (or unset), got {self.carry_std}")
        check_numbers(self)  # what the checks above leave: NaN, inf

    @property
    def period(self) -> int:
        """Blocks executed between plans."""
        return self.replan or self.horizon


@dataclass(frozen=True)
class CostConfig:
    """What a candidate action sequence is scored on."""

    cost: str = "final"
    """final: the squared latent distance between the last predicted embedding and the
    goal's (the paper's); path: that distance averaged over every predicted block (prefers
    plans that arrive early and stay); ramp: weighted by the block's index (1, ..., H over
    their sum), between the two"""
    disagreement: float = 0.0
    """with an ensemble of models (`lewm eval --ensemble`): the std of the members' costs of
    a candidate, times this weight and the number of members, added to their sum, so that
    a plan the members disagree about scores worse; 0: the sum alone"""

    def __post_init__(self):
        if self.cost not in COSTS:
            raise LewmError(f"planning cost must be one of {', '.join(COSTS)}, got {self.cost!r}")
        if not self.disagreement >= 0:
            raise LewmError(f"planning disagreement weight must be >= 0, got "
                            f"{self.disagreement}")
        check_numbers(self)  # what the checks above leave: NaN, inf


@dataclass(frozen=True)
class RuntimeConfig:
    """How the model's rollouts run: same plans (up to float rounding), other speeds."""

    precision: str = "fp32"
    """fp32, or bf16 (autocast; costs compared in fp32): faster on GPUs and on CPUs with AMX,
    with slightly different plans that may also vary with the number of episodes planned
    together (fp32 plans do not)"""
    compile: bool = False
    """run the rollouts through torch.compile (CUDA graphs on GPUs): faster plans after a
    first one that pays the compilation; costs equal the eager ones to float rounding"""

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16"):
            raise LewmError(f"planning precision must be fp32 or bf16, got {self.precision!r}")
        check_numbers(self)  # what the checks above leave: NaN, inf


@dataclass(frozen=True)
class GraphConfig:
    """The graph planner's graph over recorded frames (lewm.planning.graph)."""

    nodes: int = 4000
    """recorded frames (one per action block) in the graph, at most"""
    neighbours: int = 16
    """nearest frames (in latent distance) of other episodes tried as one-block successors"""
    probes: int = 64
    """random action blocks rolled out from each frame to find the frames it can reach"""
    lookahead: int = 8
    """blocks along the route to the subgoal CEM plans towards (with a perfect model of
    Two-Room, 3 blocks reach too little in 200 steps; 5 and 8 reach far goals)"""
    towards: str = "cem"
    """the planner that reaches each subgoal: cem, or the run's learned actor (actor,
    guarded; lewm train-actor)"""

    def __post_init__(self):
        from lewm.planning.registry import PLANNERS

        if min(self.nodes - 1, self.neighbours, self.probes, self.lookahead) < 1:
            raise LewmError("graph planner: nodes >= 2, and neighbours, probes and lookahead "
                            ">= 1")
        if self.towards == "graph" or self.towards not in PLANNERS:
            raise LewmError(f"--towards must be a planner other than graph "
                            f"({', '.join(p for p in PLANNERS if p != 'graph')}), got "
                            f"{self.towards!r}")
        check_numbers(self)  # what the checks above leave: NaN, inf


@dataclass(frozen=True)
class PlanConfig:
    """Everything that decides how a run acts: which planner, and each part's settings."""

    planner: str = "cem"
    """cem: the paper's, CEM towards the goal; graph: CEM towards subgoals on a route
    through the training frames; actor: the run's learned actor (lewm train-actor); guarded:
    the actor's plan checked by a small CEM; or any name registered in
    lewm.planning.registry"""
    solver: CEMConfig = field(default_factory=CEMConfig)
    """the search (CEM)"""
    mpc: MPCConfig = field(default_factory=MPCConfig)
    """re-plan control"""
    cost: CostConfig = field(default_factory=CostConfig)
    """what a plan is scored on"""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    """arithmetic and compilation of the rollouts"""
    graph: GraphConfig = field(default_factory=GraphConfig)
    """the graph planner's settings (--planner graph)"""

    def __post_init__(self):
        from lewm.planning.registry import PLANNERS

        if self.planner not in PLANNERS:
            raise LewmError(f"--planner must be one of {', '.join(PLANNERS)}, got "
                            f"{self.planner!r}")
        check_numbers(self)  # what the checks above leave: NaN, inf

    def replace(self, **parts) -> PlanConfig:
        """This config with fields of its parts replaced: `replace(mpc={"horizon": 3})`."""
        changes = {k: (dataclasses.replace(getattr(self, k), **v) if isinstance(v, dict) else v)
                   for k, v in parts.items()}
        return dataclasses.replace(self, **changes)


PARTS = {"solver": CEMConfig, "mpc": MPCConfig, "cost": CostConfig, "runtime": RuntimeConfig,
         "graph": GraphConfig}


def plan_from_dict(d: dict) -> PlanConfig:
    """A PlanConfig from its `dataclasses.asdict` form (config.json); unknown fields are a
    LewmError naming them."""
    try:
        parts = {name: cls(**d.get(name, {})) for name, cls in PARTS.items()}
        return PlanConfig(planner=d.get("planner", "cem"), **parts)
    except TypeError as e:
        raise LewmError(f"plan config does not match this version of lewm: {e}") from None


# Where each setting of the old `key=value` plan strings now lives: (part, field, convert).
_LEGACY = {
    **{k: ("solver", k) for k in ("samples", "elites", "iterations", "init_std", "min_std",
                                  "unbiased_std", "clip", "noise_beta", "keep_elites")},
    **{k: ("mpc", k) for k in ("horizon", "replan", "context")},
    "tail_std": ("mpc", "carry_std"),
    **{k: ("cost", k) for k in ("cost", "disagreement")},
    **{k: ("runtime", k) for k in ("precision", "compile")},
    **{k: ("graph", k) for k in ("nodes", "neighbours", "probes", "lookahead")},
}


def plan_from_strings(items) -> PlanConfig:
    """Convert the `key=value` plan of runs written before PlanConfig (TrainConfig.plan, e.g.
    ("shrink=true", "tail_std=0.25", "replan=1")) to the PlanConfig that plans the same."""
    from lewm.trainconfig import parse_value

    changes: dict = {name: {} for name in PARTS}
    carry = {"shrink": False, "warm_start": False}
    top = {}
    for item in items:
        if "=" not in item:
            raise LewmError(f"plan setting {item!r}: expected key=value")
        key, value = (s.strip() for s in item.split("=", 1))
        if key in carry:
            carry[key] = parse_value(value, bool, key)
        elif key == "planner":
            top["planner"] = value
        elif key in _LEGACY:
            part, name = _LEGACY[key]
            tp = {f.name: f.type for f in dataclasses.fields(PARTS[part])}[name]
            changes[part][name] = parse_value(value, _TYPES.get(tp, str), key)
        else:
            raise LewmError(f"plan setting {item!r}: {key!r} is not a planning setting")
    # The old loop preferred a shrinking horizon when both were set.
    changes["mpc"]["carry"] = ("shrink" if carry["shrink"] else
                               "warm" if carry["warm_start"] else "none")
    base = PlanConfig(**top)
    return base.replace(**{k: v for k, v in changes.items() if v})


def changed(plan: PlanConfig, base: PlanConfig | None = None) -> list[str]:
    """`part.field=value` for every setting of `plan` that differs from `base` (default: the
    paper's), e.g. ["solver.iterations=10", "mpc.replan=1"]."""
    base = base or PlanConfig()
    out = [f"planner={plan.planner}"] if plan.planner != base.planner else []
    for name in PARTS:
        mine, theirs = getattr(plan, name), getattr(base, name)
        out += [f"{name}.{f.name}={getattr(mine, f.name)}" for f in dataclasses.fields(mine)
                if getattr(mine, f.name) != getattr(theirs, f.name)]
    return out


def run_plan(meta: dict, planner: str | None = None) -> PlanConfig:
    """How a run acts, from its checkpoint's config.json: by default its "plan" section (or,
    for runs written before PlanConfig, the `key=value` strings its train section kept);
    with `planner`, the plan its recipe gave that planner ("plans"), else
    `planner_defaults(planner, the default plan)`."""
    if meta.get("plan") is not None:
        base = plan_from_dict(meta["plan"])
    else:
        base = plan_from_strings(meta.get("train", {}).get("plan") or ())
    if planner is None or planner == base.planner:
        return base
    recorded = (meta.get("plans") or {}).get(planner)
    if recorded is not None:
        return plan_from_dict(recorded)
    return planner_defaults(planner, base)


def planner_defaults(planner: str, base: PlanConfig) -> PlanConfig:
    """`base` (a run's CEM plan) for `planner`, with the settings that planner needs to act
    as intended where a run's recipe names none: the actor in closed loop (one call per
    executed block), and the guard a small CEM (issue 47's 64-128 candidates x 2-3
    iterations) around the actor's plan, re-planned every block."""
    if planner == "actor":
        return base.replace(planner=planner, mpc={"horizon": 1, "replan": 1, "carry": "none"})
    if planner == "guarded":
        return base.replace(planner=planner,
                            solver={"samples": 128, "elites": 16, "iterations": 3,
                                    "keep_elites": 0.0},
                            mpc={"replan": 1, "carry": "none", "carry_std": 0.5})
    return dataclasses.replace(base, planner=planner)


_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "float | None": float}

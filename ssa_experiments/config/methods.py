"""The method registry: one declaration per pruning method, and every fact about it that is not its code.

Validation (which keys a method takes), the run identity (the ``method.*`` keys a method never reads are
dropped, so they cannot split one computation into two store keys), the pruning factory (which class runs
it) and the figures (its colour) all read these declarations. Adding a method is one class under
``pruning/``, one ``MethodSpec`` here and one ``conf/method/<name>.yaml``.

Torch-free on purpose: the CLI validates a config (and ``--help`` answers) before torch is imported, which
is also what lets it set the CPU numerics first (``repro/numerics.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

# pruning/sparsity_schedules.py: shapes in keep-probability space, then curves in expected-density space
ANNEAL_SCHEDULES = ("linear", "cosine", "exponential", "cubic", "geometric", "density_linear")
ITERATIVE_SCHEDULES = ("linear", "polynomial", "cubic", "geometric")  # cubic: another name of polynomial
# the keys every annealing method reads: its schedule over n epochs and how masks are drawn and decayed
ANNEALING_KEYS = ("anneal_epochs", "schedule", "granularity", "resample", "decay_rate", "decay_sampled_out")
# method.* keys at the value that computes what runs did before the key existed: dropped from the identity
# there, so one computation has one identity however it is spelled
METHOD_KEY_DEFAULTS = {"rescore": False, "prune_every_steps": 0}


@dataclass(frozen=True)
class Style:
    """How one family of a method's runs is drawn: its colour (its settings differ in line style and marker,
    analysis/figures/style.py, so one colour per method stays readable in greyscale)."""

    family: str  # the legend entry: the method's name, or e.g. "iterative (cubic)" for a schedule
    color: str


@dataclass(frozen=True)
class MethodSpec:
    """What the framework needs to know about a method without importing it.

    ``reads`` are the ``method.*`` keys (besides ``name``) its run depends on; every other key is dropped
    from its identity. ``gradual``: it reaches the target sparsity at epoch ``method.anneal_epochs`` (else
    at the start). Whether it takes τ0 or re-scores is whether it reads ``initial_temperature`` or
    ``rescore``: one fact, stated once.
    """

    name: str
    target: str  # "module:Class", imported when a run starts
    reads: tuple[str, ...]
    gradual: bool
    styles: tuple[Style, ...]

    @property
    def takes_tau0(self) -> bool:
        return "initial_temperature" in self.reads

    @property
    def rescores(self) -> bool:
        return "rescore" in self.reads


def _spec(name: str, cls: str, reads: tuple[str, ...], gradual: bool, *styles: Style) -> MethodSpec:
    """``cls`` is "module:Class" under ``ssa_experiments/pruning/methods/``."""
    return MethodSpec(name, f"ssa_experiments.pruning.methods.{cls}", reads, gradual, styles)


ITERATIVE_KEYS = ("anneal_epochs", "schedule", "prune_every_steps")
# P is constant until epoch n: no schedule to follow, nothing to interpolate within an epoch; its target is
# fixed from the start, so there is nothing to re-score
CONSTANT_KEYS = ("anneal_epochs", "resample", "decay_sampled_out", "initial_temperature")
SOFT_KEYS = tuple(k for k in ANNEALING_KEYS if k != "resample")  # nothing is sampled: P(t) is the train mask
# dynamic sparse training: the mask's size is the target's from the start; its connections move until a stop
DST_KEYS = ("update_every", "drop_fraction", "drop_schedule", "end_fraction")
DROP_SCHEDULES = ("cosine", "constant")  # pruning/regrowth.py: how the drop fraction decays to the stop step
REGISTRY: tuple[MethodSpec, ...] = (
    _spec("dense", "base:PruningMethod", (), False, Style("dense", "black")),
    _spec("one_shot", "oneshot:OneShot", (), False, Style("one_shot", "tab:gray")),
    _spec(
        "iterative",
        "iterative:Iterative",
        ITERATIVE_KEYS,
        True,
        Style("iterative (linear)", "tab:blue"),
        Style("iterative (cubic)", "tab:purple"),
    ),
    _spec(
        "random_annealing",
        "annealing:RandomAnnealing",
        (*ANNEALING_KEYS, "max_initial_probability", "rescore"),
        True,
        Style("random_annealing", "tab:orange"),
    ),
    _spec(
        "temperature_annealing",
        "annealing:TemperatureAnnealing",
        (*ANNEALING_KEYS, "initial_temperature", "rescore"),
        True,
        Style("temperature_annealing", "tab:red"),
    ),
    _spec(
        "stochastic_constant",
        "controls:StochasticConstant",
        CONSTANT_KEYS,
        True,
        Style("stochastic_constant", "tab:brown"),
    ),
    # the weights outside the target are zeroed at the start: nothing to re-choose from, no re-scoring
    _spec(
        "dropconnect_target",
        "controls:DropConnectTarget",
        (*ANNEALING_KEYS, "initial_drop_rate"),
        True,
        Style("dropconnect_target", "tab:olive"),
    ),
    _spec(
        "soft_annealing",
        "controls:SoftAnnealing",
        (*SOFT_KEYS, "initial_temperature", "rescore"),
        True,
        Style("soft_annealing", "tab:pink"),
    ),
    _spec("set", "dst:SET", DST_KEYS, False, Style("set", "teal")),
    _spec("rigl", "dst:RigL", DST_KEYS, False, Style("rigl", "tab:green")),
)
SPECS = {s.name: s for s in REGISTRY}


def spec(name: str) -> MethodSpec:
    return SPECS[name]


# The views the rest of the code reads, all derived from the declarations above.
METHODS = tuple(SPECS)
METHOD_KEYS = {s.name: s.reads for s in REGISTRY}
GRADUAL_METHODS = tuple(s.name for s in REGISTRY if s.gradual)  # reach the target at epoch n
TAU0_METHODS = tuple(s.name for s in REGISTRY if s.takes_tau0)  # read method.initial_temperature
RESCORE_METHODS = tuple(s.name for s in REGISTRY if s.rescores)  # read method.rescore
DST_METHODS = tuple(s.name for s in REGISTRY if "update_every" in s.reads)  # move connections while training
STYLES = {st.family: st for s in REGISTRY for st in s.styles}  # figure families, in legend order

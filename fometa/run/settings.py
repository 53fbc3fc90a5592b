"""Every setting of a run, declared once (default, kind, help), and `Config`, one value of each.

A declaration gives the setting's default, its kind (parsing, bounds or choices), its help
text and whether it is a command-line flag. `fometa train`'s parser is generated from them
(`fometa.run.cli`) and every value, from the command line or from Python, is checked here by
`check`. A new setting is one field of `Config` plus its use.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Collection, Iterator

import numpy as np

from fometa.algorithms import ALGORITHMS
from fometa.convnets import CONV_IMPLS
from fometa.data import OMNIGLOT_SPLITS
from fometa.errors import ConfigError
from fometa.learned_lr import KINDS as LEARNED_LR_KINDS
from fometa.models import ACTIVATIONS
from fometa.run.problems import (ALGORITHM_OPTIONS, COMPUTE_DTYPES, DATASETS, INNER_OPTIMIZERS,
                                 LOSS_REDUCTIONS, MATMUL_PRECISIONS, ONE_TASK_AT_A_TIME_HELP,
                                 REMAT_MIN_STEPS, learned_rates, one_device)


TASK_ORDERS: tuple[str, ...] = ("parallel", "sequential")
SEEDS = 2 ** 64         # a seed is 64 bits: the two 32-bit words of a threefry key
ITERATIONS = 2 ** 31 - 1  # meta-iterations are counted in int32 (MetaState.step)


def flag(name: str) -> str:
    """The command-line flag of setting `name`: "meta_iters" -> "--meta-iters"."""
    return "--" + name.replace("_", "-")


# --------------------------------------------------------------------------- kinds of values
# Each kind parses command-line text (`parse`) and checks a value (`check`), raising a
# one-line ConfigError that names the flag, the value and what is allowed.


def _refuse(kind: Any, name: str, value: Any) -> None:
    raise ConfigError(f"{flag(name)} {value!r} is not allowed (expected {kind.allowed})")


@dataclasses.dataclass(frozen=True)
class Whole:
    """A whole number >= `minimum` (and <= `maximum`, where there is one)."""

    minimum: int = 1
    maximum: int | None = None
    metavar = "N"

    @property
    def allowed(self) -> str:
        if self.maximum is None:
            return f"a whole number >= {self.minimum}"
        return f"a whole number from {self.minimum} to {self.maximum}"

    def parse(self, name: str, text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{flag(name)} {text!r} is not a whole number "
                              f"(expected {self.allowed})") from None

    def check(self, name: str, value: Any) -> None:
        if (isinstance(value, bool) or not isinstance(value, int) or value < self.minimum
                or (self.maximum is not None and value > self.maximum)):
            _refuse(self, name, value)


@dataclasses.dataclass(frozen=True)
class Real:
    """A finite number > `minimum` (>= with `inclusive`)."""

    minimum: float = 0.0
    inclusive: bool = False
    metavar = "X"

    @property
    def allowed(self) -> str:
        return f"a finite number {'>=' if self.inclusive else '>'} {self.minimum:g}"

    def parse(self, name: str, text: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{flag(name)} {text!r} is not a number") from None

    def check(self, name: str, value: Any) -> None:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value)
              and (value >= self.minimum if self.inclusive else value > self.minimum))
        if not ok:
            _refuse(self, name, value)
        if value and abs(value) < FLOAT32_TINY:
            raise ConfigError(f"{flag(name)} {value!r} is below float32's smallest normal "
                              f"number ({FLOAT32_TINY:.4g}): it would compute as 0")


# Nonzero settings below this compute as 0 (or as denormals, which XLA:CPU flushes to 0).
FLOAT32_TINY = float(np.finfo(np.float32).tiny)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of the names in `options` (a collection read at each use, so that a registry
    such as `fometa.ALGORITHMS` offers what is registered when it is asked)."""

    options: Collection[str]

    @property
    def allowed(self) -> str:
        return f"one of {', '.join(self.options)}"

    @property
    def metavar(self) -> str:
        return "{" + ",".join(self.options) + "}"

    def parse(self, name: str, text: str) -> str:
        return text

    def check(self, name: str, value: Any) -> None:
        if value not in self.options:
            _refuse(self, name, value)


@dataclasses.dataclass(frozen=True)
class Switch:
    """True or False (`--name` / `--no-name` on the command line, parsed by argparse)."""

    allowed = "true or false"

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, bool):
            _refuse(self, name, value)


@dataclasses.dataclass(frozen=True)
class Devices:
    """A device count >= 1, or "all"."""

    allowed = "a whole number >= 1 or 'all'"
    metavar = "N|all"

    def parse(self, name: str, text: str) -> str:
        return text

    def check(self, name: str, value: Any) -> None:
        if not (value == "all" or (isinstance(value, str) and value.isascii() and value.isdigit()
                                   and int(value) > 0)):
            _refuse(self, name, value)


@dataclasses.dataclass(frozen=True)
class Text:
    """Any text (a path)."""

    allowed = "text"
    metavar = "TEXT"

    def parse(self, name: str, text: str) -> str:
        return text

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, str):
            _refuse(self, name, value)


@dataclasses.dataclass(frozen=True)
class Widths:
    """Layer widths: a tuple of whole numbers >= 1."""

    allowed = "a tuple of whole numbers >= 1"

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
            _refuse(self, name, value)


Kind = Whole | Real | Choice | Switch | Devices | Text | Widths


@dataclasses.dataclass(frozen=True)
class Setting:
    """A setting's declaration."""

    kind: Kind
    help: str
    optional: bool = False   # None is allowed: "not applicable" or "derived" (the help says)
    flag: bool = True        # a `fometa train` flag (else set by presets only)
    resumable: bool = False  # may differ between a run and its resumption: changes no number
    evaluation: bool = False  # may be changed when re-evaluating a trained run (fometa eval)
    metavar: str | None = None  # the value's name in --help (default: the kind's)


def setting(default: Any, kind: Kind, help: str, **options: Any) -> Any:
    """A `Config` field with its declaration; a None default makes it optional."""
    options.setdefault("optional", default is None)
    return dataclasses.field(default=default,
                             metadata={"setting": Setting(kind, help, **options)})


# --------------------------------------------------------------------------- the settings


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a run. `None` means "not applicable to this dataset" or "derived"."""

    dataset: str = setting("sine", Choice(DATASETS), "task family (default: sine)")
    algorithm: str = setting("reptile", Choice(ALGORITHMS), "meta-learning algorithm")
    preset: str | None = setting(None, Text(),
                                 "a row of the paper's experiments (see 'fometa presets')",
                                 metavar="NAME")
    seed: int = setting(0, Whole(0, SEEDS - 1), "PRNG seed: each gives its own stream")
    # Tasks.
    ways: int | None = setting(None, Whole(), "classes per task")
    shots: int = setting(10, Whole(), "support examples per class at evaluation",
                         evaluation=True)
    train_shots: int | None = setting(
        None, Whole(), "examples per class in a training task (default: shots)")
    queries: int = setting(10, Whole(0), "query examples per class (sine: points) in a training "
                           "task (0: none, for rules that never read it: reptile, foml)")
    # Inner loop.
    inner_iters: int = setting(5, Whole(), "inner steps per task in training")
    inner_batch: int | None = setting(
        10, Whole(), "minibatch size of an inner step (None: the whole support)", optional=True)
    inner_optimizer: str = setting("sgd", Choice(INNER_OPTIMIZERS),
                                   "inner optimizer (adam: the paper's, beta1 = 0)")
    inner_lr: float = setting(0.02, Real(), "inner learning rate")
    loss_reduction: str = setting(
        "mean", Choice(LOSS_REDUCTIONS),
        "how a batch's per-example losses are reduced: mean; sum (the Reptile paper's code); "
        "sum/shots (MAML's code: the sum divided by the training shots per class K, in "
        "evaluation too)",
        evaluation=True)
    carry_inner_state: bool = setting(
        False, Switch(), "carry the inner optimizer state across tasks (the paper's Reptile)")
    task_order: str = setting(
        "parallel", Choice(TASK_ORDERS),
        "parallel: a meta-batch's tasks are vmapped and the carried inner state becomes the "
        "mean of their final states; sequential: they run one after another through one "
        "inner state, as the Reptile paper's code does")
    replacement: bool = setting(
        False, Switch(), "draw each inner minibatch independently instead of cycling through "
        "shuffled epochs of the pool (the Reptile paper's code's --replacement)")
    foml_tail: int | None = setting(
        None, Whole(), "examples per class kept apart as a training task's last inner "
        "minibatch (the Reptile paper's code's --foml-tail, for --algorithm foml)")
    unroll: int = setting(1, Whole(), "lax.scan unroll of the inner loop")
    remat: bool | None = setting(
        None, Switch(), "rematerialise each inner step in the backward pass (MAML: memory, and "
        "speed on a CPU); default (none): on for second-order algorithms with at least "
        f"{REMAT_MIN_STEPS} inner steps on a CPU, where it is measured to pay "
        "(benchmarks/README.md)", resumable=True)
    tasks_at_once: int | None = setting(
        None, Whole(), "parallel tasks computed at once (vmapped; 1: each task unbatched), the "
        "groups one after another, with --task-order parallel and --devices 1; default "
        f"(none): one at a time for {ONE_TASK_AT_A_TIME_HELP} on a CPU, where it is measured "
        "faster (benchmarks/README.md), else all. Float rounding differs, the computation does not",
        resumable=True)
    dtype: str = setting("float32", Choice(COMPUTE_DTYPES),
                         "compute dtype (bfloat16: mixed precision; parameters stay float32)",
                         evaluation=True)
    matmul_precision: str = setting(
        "default", Choice(MATMUL_PRECISIONS),
        "precision of float32 matrix products: default (XLA's: TF32 on recent NVIDIA GPUs), "
        "tensorfloat32 or float32 (full, as the papers' 2018 runs)",
        evaluation=True)
    devices: str = setting("1", Devices(), "devices to shard the task batch over: N or 'all' "
                                           "(where the CPU is all there is, N splits it into N)")
    # Outer loop.
    meta_iters: int = setting(30000, Whole(1, ITERATIONS), "meta-iterations")
    meta_batch: int = setting(1, Whole(), "tasks per meta-iteration")
    outer_lr: float = setting(1e-3, Real(), "MAML/FOMAML meta-optimizer (Adam) step size")
    outer_clip: float | None = setting(
        None, Real(), "MAML/FOMAML: clip each meta-gradient element to [-X, X] before Adam "
        "(MAML's code on Mini-ImageNet: 10)")
    outer_lr_final: float | None = setting(
        None, Real(), "MAML/FOMAML: anneal the meta-optimizer's step size from outer-lr to X "
        "by a cosine over the run (MAML++; default: constant)")
    meta_step: float = setting(0.1, Real(), "Reptile's initial meta step size")
    meta_step_final: float = setting(0.0, Real(inclusive=True),
                                     "Reptile's final meta step size (annealed linearly)")
    # The paper's successors (second-order rules: maml, meta-sgd, anil).
    learn_inner_lr: str | None = setting(
        None, Choice(LEARNED_LR_KINDS), "meta-learn the inner learning rates, starting from "
        "inner-lr: per-parameter (Meta-SGD; the default of --algorithm meta-sgd) or "
        "per-layer-step (MAML++'s per-layer, per-step rates)")
    inner_lr_low: float | None = setting(
        None, Real(), "learned inner rates start drawn uniformly from [X, inner-lr) rather than "
        "all at inner-lr (Meta-SGD's paper: [0.005, 0.1])")
    first_order_iters: int = setting(
        0, Whole(0), "MAML++'s derivative-order annealing: first-order meta-gradients for "
        "this many meta-iterations, then second-order")
    multi_step_iters: int | None = setting(
        None, Whole(), "MAML++'s multi-step loss: the query loss after every inner step, "
        "weights annealed towards the last step's over this many meta-iterations")
    per_step_bn: bool = setting(
        False, Switch(), "MAML++'s per-step batch-norm weights and biases: one value per inner "
        "step, meta-learned, not adapted in the inner loop")
    imaml_lambda: float | None = setting(
        None, Real(), "iMAML's proximal regularisation lambda (default 1.0)")
    cg_steps: int | None = setting(
        None, Whole(), "iMAML's conjugate-gradient steps for the implicit gradient (default 5)")
    # Evaluation.
    eval_inner_iters: int = setting(32, Whole(), "inner steps at evaluation",
                                    evaluation=True)
    eval_inner_batch: int | None = setting(
        None, Whole(), "minibatch of an evaluation inner step (default: the whole support)",
        evaluation=True)
    eval_tasks: int = setting(1000, Whole(), "evaluation tasks", evaluation=True)
    # Image datasets.
    data_dir: str | None = setting(
        None, Text(), "folder of the dataset files (image datasets; default: $FOMETA_DATA_DIR, "
        "else tensorflow-datasets for Omniglot)", metavar="DIR",
        evaluation=True, resumable=True)
    omniglot_split: str = setting(
        "paper", Choice(OMNIGLOT_SPLITS),
        "paper: 1200/423 characters, training ones rotated; maml: 1100/100/423, all rotated")
    conv: str = setting("auto", Choice(CONV_IMPLS),
                        "convolution: patch (matmul, fast on CPU), xla, or auto (per platform)",
                        evaluation=True)
    # Sine-wave tasks (set by the sine presets).
    sine_phase_max: float = setting(2 * math.pi, Real(), "largest sine phase", flag=False)
    sine_on_grid: bool = setting(True, Switch(),
                                 "training inputs on the paper's fixed grid (else uniform)",
                                 flag=False)
    hidden: tuple[int, ...] = setting((64, 64), Widths(), "hidden layer widths of the sine MLP",
                                      flag=False)
    activation: str = setting("tanh", Choice(ACTIVATIONS), "activation of the sine MLP",
                              flag=False)
    # Logging, checkpoints and periodic evaluation (chunk ends: multiples of log_every).
    log_every: int | None = setting(
        None, Whole(), "meta-iterations per logged chunk (default: about 3 s of training a "
        "chunk, and at least 50 chunks a run)", resumable=True)
    checkpoint_every: int | None = setting(
        None, Whole(), "meta-iterations between checkpoints, at chunk ends (default: every 10 "
        "chunks)", resumable=True)
    eval_every: int | None = setting(
        None, Whole(), "meta-iterations between evaluations on min(eval-tasks, 1000) tasks, "
        "at chunk ends (default: only the final evaluation)", resumable=True)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        unknown = sorted(set(d) - set(DECLARED))
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}")
        d = dict(d)
        if d.get("hidden") is not None:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)


DECLARED: dict[str, Setting] = {f.name: f.metadata["setting"] for f in dataclasses.fields(Config)}


def evaluation_settings() -> list[str]:
    """The settings that `fometa eval` may change for a trained run (declaration order)."""
    return [name for name, s in DECLARED.items() if s.evaluation]


def flags() -> Iterator[tuple[str, Setting]]:
    """The settings that are `fometa train` flags, in declaration order."""
    return ((name, s) for name, s in DECLARED.items() if s.flag)


def check_value(name: str, value: Any) -> None:
    """Raises a one-line ConfigError unless `value` is allowed for setting `name`."""
    if value is None and DECLARED[name].optional:
        return
    DECLARED[name].kind.check(name, value)


def parse(name: str, text: str) -> Any:
    """Setting `name`'s value from command-line text, checked."""
    value = DECLARED[name].kind.parse(name, text)
    check_value(name, value)
    return value


def check(cfg: Config) -> Config:
    """`cfg` if every value is allowed and its dataset accepts the combination; else a
    one-line ConfigError naming the first value at fault."""
    for name in DECLARED:
        check_value(name, getattr(cfg, name))
    check_algorithm(cfg)
    if cfg.tasks_at_once is not None and cfg.task_order == "sequential":
        raise ConfigError(f"--tasks-at-once {cfg.tasks_at_once} groups parallel tasks; with "
                          "--task-order sequential they run one after another already: leave "
                          "--tasks-at-once unset")
    if cfg.tasks_at_once is not None and not one_device(cfg):
        raise ConfigError(f"--tasks-at-once {cfg.tasks_at_once} groups the tasks on one "
                          f"device; --devices {cfg.devices} shards them over devices: use "
                          "--devices 1 or leave --tasks-at-once unset")
    DATASETS[cfg.dataset].check(cfg)
    return cfg


def check_algorithm(cfg: Config) -> None:
    """A one-line ConfigError for a setting that the algorithm does not use."""
    rule = ALGORITHMS[cfg.algorithm]
    for option, name in ALGORITHM_OPTIONS.items():
        if getattr(cfg, name) is not None and option not in rule.options:
            raise ConfigError(f"{flag(name)} applies to algorithms with the option {option!r} "
                              f"(imaml), not {cfg.algorithm!r}")
    if cfg.queries == 0 and rule.needs_query:
        readers = ", ".join(n for n, r in ALGORITHMS.items() if not r.needs_query)
        raise ConfigError(f"--queries 0 leaves no query, which {cfg.algorithm!r} reads; 0 "
                          f"applies to {readers}")
    second_order = ("learn_inner_lr", "multi_step_iters", "first_order_iters", "per_step_bn")
    for name in second_order:
        if getattr(cfg, name) and not rule.second_order:
            raise ConfigError(f"{flag(name)} applies to second-order algorithms (maml, "
                              f"meta-sgd, anil), not {cfg.algorithm!r}")
    if cfg.inner_lr_low is not None:
        if not learned_rates(cfg):
            raise ConfigError("--inner-lr-low applies to learned inner rates (--learn-inner-lr, "
                              f"meta-sgd), not to {cfg.algorithm!r}'s fixed ones")
        if cfg.inner_lr_low >= cfg.inner_lr:
            raise ConfigError(f"--inner-lr-low {cfg.inner_lr_low} must be below --inner-lr "
                              f"{cfg.inner_lr} (the rates are drawn from [low, inner-lr))")
    if cfg.per_step_bn and (cfg.first_order_iters or cfg.carry_inner_state):
        other = "--first-order-iters" if cfg.first_order_iters else "--carry-inner-state"
        raise ConfigError(f"--per-step-bn values are learned through the inner loop: not with "
                          f"{other}")
    # (--per-step-bn with --carry-inner-state is refused above.)
    indexed = ("--per-step-bn" if cfg.per_step_bn else "--learn-inner-lr per-layer-step"
               if cfg.learn_inner_lr == "per-layer-step" else None)
    carried = ("--task-order sequential" if cfg.task_order == "sequential" else
               "--carry-inner-state" if cfg.carry_inner_state else None)
    if indexed and carried:
        raise ConfigError(f"{indexed} takes a value per inner step of each task: not with "
                          f"{carried} (a task would start at the step count of the state it "
                          "is handed)")
    if learned_rates(cfg) and cfg.inner_optimizer != "sgd":
        raise ConfigError(f"learned inner learning rates scale plain gradient steps: "
                          f"--inner-optimizer {cfg.inner_optimizer} must be sgd")
    if cfg.outer_lr_final is not None and rule.interpolates:
        raise ConfigError(f"--outer-lr-final applies to the meta-optimizer of maml, fomaml "
                          f"and the like; {cfg.algorithm!r} anneals --meta-step")


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings (by name) in which two configs' dicts differ. Resumable settings are
    left out, and so is a setting missing from `saved` whose value in `now` is its default:
    it was added after `saved` was written, and its default computes what ran then."""
    defaults = json.loads(json.dumps(Config().to_dict()))
    return [k for k in now if not (k in DECLARED and DECLARED[k].resumable)
            and saved.get(k, defaults.get(k)) != now[k]]

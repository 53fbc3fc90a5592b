"""Run settings: one flat, JSON-serialisable `Config`, per-dataset defaults and paper presets."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

DATASETS: tuple[str, ...] = ("sine", "omniglot", "mini-imagenet")
INNER_OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
OMNIGLOT_SPLITS: tuple[str, ...] = ("paper", "maml")
CONVS: tuple[str, ...] = ("auto", "patch", "xla")
DTYPES: tuple[str, ...] = ("float32", "bfloat16")


class ConfigError(ValueError):
    """A bad setting from the user; the message is one line naming the value."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a run. `None` means "not applicable to this dataset"."""

    dataset: str = "sine"
    algorithm: str = "reptile"
    preset: str | None = None
    seed: int = 0
    # Tasks.
    ways: int | None = None          # classes per task (classification)
    shots: int = 10                  # support examples per class (sine: support points) at evaluation
    train_shots: int | None = None   # examples per class (sine: points) in a training task; None = shots
    queries: int = 10                # query examples per class (sine: points) of a training task
    # Inner loop.
    inner_iters: int = 5
    inner_batch: int | None = 10     # minibatch size of an inner step; None = the whole support
    inner_optimizer: str = "sgd"     # "sgd" or "adam" (the paper's Adam has beta1 = 0)
    inner_lr: float = 0.02
    carry_inner_state: bool = False  # carry the inner optimizer state across tasks (paper's Reptile)
    unroll: int = 1                  # lax.scan unroll of the inner loop
    remat: bool = False              # rematerialise each inner step (jax.checkpoint) to save memory
    dtype: str = "float32"           # compute dtype: "float32" or "bfloat16" (parameters stay float32)
    devices: str = "1"               # devices to shard the task batch over: a count or "all"
    # Outer loop.
    meta_iters: int = 30000
    meta_batch: int = 1
    outer_lr: float = 1e-3           # MAML/FOMAML: Adam learning rate
    meta_step: float = 0.1           # Reptile: initial interpolation step eps
    meta_step_final: float = 0.0     # Reptile: eps annealed linearly to this
    # Evaluation.
    eval_inner_iters: int = 32
    eval_inner_batch: int | None = None  # minibatch of an evaluation inner step; None = the whole support
    eval_tasks: int = 1000
    # Image datasets.
    data_dir: str | None = None      # None: $FOMETA_DATA_DIR, else tensorflow-datasets (Omniglot)
    omniglot_split: str = "paper"    # "paper" (1200/423, train rotated) or "maml" (1100/100/423, all rotated)
    conv: str = "auto"               # "patch" (matmul form, fast on CPU), "xla", or "auto" (per platform)
    # Sine-wave tasks.
    sine_phase_max: float = 2 * math.pi
    sine_on_grid: bool = True        # training inputs on the paper's fixed grid (else uniform)
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    # Logging, checkpoints and periodic evaluation (chunk ends: multiples of log_every).
    log_every: int = 1000
    checkpoint_every: int | None = None  # meta-iterations between checkpoints; None = 10 * log_every
    eval_every: int | None = None        # meta-iterations between evaluations; None = only at the end

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}")
        d = dict(d)
        if d.get("hidden") is not None:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)


# Presets name rows of the papers' experiments. Each maps settings to values; `paper` is
# what the paper reports for it, shown by `fometa presets`.
def _paper(reptile: str, transductive: str) -> str:
    return f"{reptile}% (transductive {transductive}%)"


_SINE = dict(dataset="sine", eval_tasks=1000, queries=10, shots=10, inner_optimizer="sgd")
PRESETS: dict[str, dict[str, Any]] = {
    "reptile-sine": {
        "paper": "Nichol et al. 2018, Fig. 1 (qualitative)",
        "settings": dict(_SINE, algorithm="reptile", train_shots=50, inner_iters=5,
                         inner_batch=10, inner_lr=0.02, meta_iters=30000, meta_batch=1,
                         meta_step=0.1, meta_step_final=0.0, eval_inner_iters=32,
                         sine_phase_max=2 * math.pi, sine_on_grid=True, hidden=(64, 64),
                         activation="tanh"),
    },
    "maml-sine": {
        "paper": "Finn et al. 2017, Sec. 5.1 (K = 10; qualitative)",
        "settings": dict(_SINE, algorithm="maml", train_shots=10, inner_iters=1,
                         inner_batch=None, inner_lr=0.01, meta_iters=70000, meta_batch=25,
                         outer_lr=1e-3, eval_inner_iters=10, sine_phase_max=math.pi,
                         sine_on_grid=False, hidden=(40, 40), activation="relu"),
    },
}

# Reptile rows: the paper's Table 3 (appendix A) hyperparameters; its inner Adam (beta1 = 0)
# carries its state through training into evaluation; one query per class is drawn only to
# log a query loss. Accuracies: the paper's Tables 1 and 2.
_REPTILE = dict(algorithm="reptile", inner_optimizer="adam", carry_inner_state=True,
                meta_step=1.0, meta_step_final=0.0, meta_batch=5, queries=1,
                eval_inner_iters=50, eval_tasks=10000)
for ways, shots, paper in ((5, 1, _paper("95.39 +/- 0.09", "97.68 +/- 0.04")),
                           (5, 5, _paper("98.90 +/- 0.10", "99.48 +/- 0.06")),
                           (20, 1, _paper("88.14 +/- 0.15", "89.43 +/- 0.14")),
                           (20, 5, _paper("96.65 +/- 0.33", "97.12 +/- 0.32"))):
    five = ways == 5
    PRESETS[f"reptile-omniglot-{ways}w{shots}s"] = {"paper": paper, "settings": dict(
        _REPTILE, dataset="omniglot", ways=ways, shots=shots, train_shots=10,
        inner_lr=0.001 if five else 0.0005, inner_batch=10 if five else 20,
        inner_iters=5 if five else 10, meta_iters=100000 if five else 200000,
        eval_inner_batch=5 if five else 10)}
for shots, paper in ((1, _paper("47.07 +/- 0.26", "49.97 +/- 0.32")),
                     (5, _paper("62.74 +/- 0.37", "65.99 +/- 0.58"))):
    PRESETS[f"reptile-mini-imagenet-5w{shots}s"] = {"paper": paper, "settings": dict(
        _REPTILE, dataset="mini-imagenet", ways=5, shots=shots, train_shots=15,
        inner_lr=0.001, inner_batch=10, inner_iters=8, meta_iters=100000,
        eval_inner_batch=5 if shots == 1 else 15)}

# MAML and first-order MAML rows: Finn et al. 2017 (its README's commands and main.py):
# inner SGD on the whole support, K query examples per class (15 on Mini-ImageNet),
# outer Adam 1e-3, 60,000 meta-iterations, 10 inner steps at test time, MAML's Omniglot
# split with rotations everywhere. Accuracies (transductive: batch-norm statistics from
# the query batch, as MAML's code) as quoted in the Reptile paper's Tables 1 and 2.
_MAML_PAPER = {
    ("maml", "omniglot", 5, 1): "98.7 +/- 0.4", ("maml", "omniglot", 5, 5): "99.9 +/- 0.1",
    ("maml", "omniglot", 20, 1): "95.8 +/- 0.3", ("maml", "omniglot", 20, 5): "98.9 +/- 0.2",
    ("fomaml", "omniglot", 5, 1): "98.3 +/- 0.5", ("fomaml", "omniglot", 5, 5): "99.2 +/- 0.2",
    ("fomaml", "omniglot", 20, 1): "89.4 +/- 0.5", ("fomaml", "omniglot", 20, 5): "97.9 +/- 0.1",
    ("maml", "mini-imagenet", 5, 1): "48.70 +/- 1.84",
    ("maml", "mini-imagenet", 5, 5): "63.11 +/- 0.92",
    ("fomaml", "mini-imagenet", 5, 1): "48.07 +/- 1.75",
    ("fomaml", "mini-imagenet", 5, 5): "63.15 +/- 0.91",
}
for (algorithm, dataset, ways, shots), accuracy in _MAML_PAPER.items():
    common = dict(algorithm=algorithm, dataset=dataset, ways=ways, shots=shots,
                  train_shots=shots, inner_optimizer="sgd", inner_batch=None,
                  carry_inner_state=False, outer_lr=1e-3, meta_iters=60000,
                  eval_inner_iters=10, eval_inner_batch=None, eval_tasks=10000)
    if dataset == "omniglot":
        common.update(queries=shots, omniglot_split="maml", inner_lr=0.4 if ways == 5 else 0.1,
                      inner_iters=1 if ways == 5 else 5, meta_batch=32 if ways == 5 else 16)
    else:
        common.update(queries=15, inner_lr=0.01, inner_iters=5, meta_batch=4 if shots == 1 else 2)
    PRESETS[f"{algorithm}-{dataset}-{ways}w{shots}s"] = {
        "paper": f"transductive {accuracy}%", "settings": common}

# The preset a dataset starts from when none is named.
DEFAULT_PRESET = {"sine": "reptile-sine", "omniglot": "reptile-omniglot-5w1s",
                  "mini-imagenet": "reptile-mini-imagenet-5w1s"}


def _check(cfg: Config) -> Config:
    from fometa.algorithms import ALGORITHMS

    if cfg.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg.dataset!r}; expected one of {', '.join(DATASETS)}")
    if cfg.algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {cfg.algorithm!r}; expected one of "
                          f"{', '.join(ALGORITHMS)}")
    if cfg.inner_optimizer not in INNER_OPTIMIZERS:
        raise ConfigError(f"unknown inner optimizer {cfg.inner_optimizer!r}; expected one of "
                          f"{', '.join(INNER_OPTIMIZERS)}")
    if cfg.omniglot_split not in OMNIGLOT_SPLITS:
        raise ConfigError(f"unknown Omniglot split {cfg.omniglot_split!r}; expected one of "
                          f"{', '.join(OMNIGLOT_SPLITS)}")
    if cfg.conv not in CONVS:
        raise ConfigError(f"unknown conv {cfg.conv!r}; expected one of {', '.join(CONVS)}")
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {cfg.dtype!r}; expected one of {', '.join(DTYPES)}")
    if not (cfg.devices == "all" or (cfg.devices.isdigit() and int(cfg.devices) > 0)):
        raise ConfigError(f"devices must be a whole number >= 1 or 'all', got {cfg.devices!r}")
    counts = ["shots", "queries", "inner_iters", "meta_iters", "meta_batch", "eval_inner_iters",
              "eval_tasks", "log_every", "checkpoint_every", "eval_every", "unroll", "ways", "train_shots", "inner_batch", "eval_inner_batch"]
    for name in counts:
        value = getattr(cfg, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value <= 0):
            raise ConfigError(f"{name.replace('_', '-')} must be a positive whole number, "
                              f"got {value!r}")
    for name in ("inner_lr", "outer_lr", "meta_step"):
        value = getattr(cfg, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{name.replace('_', '-')} must be a finite number > 0, got {value!r}")
    if not (math.isfinite(cfg.meta_step_final) and cfg.meta_step_final >= 0):
        raise ConfigError(f"meta-step-final must be a finite number >= 0, got {cfg.meta_step_final!r}")
    if cfg.dataset == "sine":
        if cfg.ways is not None:
            raise ConfigError(f"--ways {cfg.ways} does not apply to the sine dataset (regression); "
                              "leave it out")
        if cfg.sine_on_grid and cfg.train_shots is None:
            raise ConfigError("sine tasks on the grid need train-shots (the grid size)")
    elif cfg.ways is None:
        raise ConfigError(f"dataset {cfg.dataset!r} needs --ways")
    return cfg


def resolve(dataset: str | None = None, preset: str | None = None, **overrides: Any) -> Config:
    """The config for a run: the dataset's default preset (or `preset`), then `overrides`.

    Overrides whose value is None are ignored, so CLI flags left out keep the preset's value.
    """
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; run 'fometa presets' to list them "
                          f"({', '.join(PRESETS)})")
    if preset is None:
        ds = dataset or "sine"
        if ds not in DATASETS:
            raise ConfigError(f"unknown dataset {ds!r}; expected one of {', '.join(DATASETS)}")
        if ds not in DEFAULT_PRESET:
            raise ConfigError(f"dataset {ds!r} is not available in this version of fometa; "
                              f"expected one of {', '.join(DEFAULT_PRESET)}")
        base_name = DEFAULT_PRESET[ds]
    else:
        base_name = preset
    settings = dict(PRESETS[base_name]["settings"])
    if dataset is not None and dataset != settings["dataset"]:
        raise ConfigError(f"preset {base_name!r} is for dataset {settings['dataset']!r}, "
                          f"not {dataset!r}")
    settings["preset"] = preset
    settings.update({k: v for k, v in overrides.items() if v is not None})
    fields = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ConfigError(f"unknown settings {unknown}")
    return _check(Config(**settings))

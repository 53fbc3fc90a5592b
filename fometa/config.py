"""Run settings: one flat, JSON-serialisable `Config`, per-dataset defaults and paper presets."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

DATASETS: tuple[str, ...] = ("sine", "omniglot", "mini-imagenet")
INNER_OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")


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
    queries: int = 10                # query examples per task for MAML/FOMAML (sine: points)
    # Inner loop.
    inner_iters: int = 5
    inner_batch: int | None = 10     # minibatch size of an inner step; None = the whole support
    inner_optimizer: str = "sgd"     # "sgd" or "adam" (the paper's Adam has beta1 = 0)
    inner_lr: float = 0.02
    carry_inner_state: bool = False  # carry the inner optimizer state across tasks (paper's Reptile)
    unroll: int = 1                  # lax.scan unroll of the inner loop
    # Outer loop.
    meta_iters: int = 30000
    meta_batch: int = 1
    outer_lr: float = 1e-3           # MAML/FOMAML: Adam learning rate
    meta_step: float = 0.1           # Reptile: initial interpolation step eps
    meta_step_final: float = 0.0     # Reptile: eps annealed linearly to this
    # Evaluation.
    eval_inner_iters: int = 32
    eval_tasks: int = 1000
    # Sine-wave tasks.
    sine_phase_max: float = 2 * math.pi
    sine_on_grid: bool = True        # training inputs on the paper's fixed grid (else uniform)
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    # Logging.
    log_every: int = 1000

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
PRESETS: dict[str, dict[str, Any]] = {
    "sine-reptile": {
        "paper": "Nichol et al. 2018, Fig. 1 (qualitative)",
        "settings": dict(dataset="sine", algorithm="reptile", shots=10, train_shots=50,
                         queries=10, inner_iters=5, inner_batch=10, inner_optimizer="sgd",
                         inner_lr=0.02, meta_iters=30000, meta_batch=1, meta_step=0.1,
                         meta_step_final=0.0, eval_inner_iters=32, eval_tasks=1000,
                         sine_phase_max=2 * math.pi, sine_on_grid=True, hidden=(64, 64),
                         activation="tanh"),
    },
    "sine-maml": {
        "paper": "Finn et al. 2017, Sec. 5.1 (K = 10; qualitative)",
        "settings": dict(dataset="sine", algorithm="maml", shots=10, train_shots=10,
                         queries=10, inner_iters=1, inner_batch=None, inner_optimizer="sgd",
                         inner_lr=0.01, meta_iters=70000, meta_batch=25, outer_lr=1e-3,
                         eval_inner_iters=10, eval_tasks=1000, sine_phase_max=math.pi,
                         sine_on_grid=False, hidden=(40, 40), activation="relu"),
    },
}

# The preset a dataset starts from when none is named.
DEFAULT_PRESET = {"sine": "sine-reptile"}


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
    counts = ["shots", "queries", "inner_iters", "meta_iters", "meta_batch", "eval_inner_iters",
              "eval_tasks", "log_every", "unroll", "ways", "train_shots", "inner_batch"]
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

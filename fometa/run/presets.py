"""Presets: the papers' experiments as data, and `resolve` from a preset and flags to a Config.

`resolve` starts from a preset (or the dataset's default one), applies the settings given
and checks the result.
"""

from __future__ import annotations

import math
from typing import Any

from fometa.errors import ConfigError
from fometa.run.settings import DECLARED, Config, check, check_value


def _paper(reptile: str, transductive: str) -> str:
    return f"{reptile}% (transductive {transductive}%)"


# Presets name rows of the papers' experiments. Each maps settings to values; `paper` is
# what the paper reports for it, shown by `fometa presets`.
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


def resolve(dataset: str | None = None, preset: str | None = None, **overrides: Any) -> Config:
    """The config for a run: the dataset's default preset (or `preset`), then `overrides`.

    Overrides whose value is None are ignored, so CLI flags left out keep the preset's value.
    """
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; run 'fometa presets' to list them "
                          f"({', '.join(PRESETS)})")
    if preset is None:
        ds = dataset or "sine"
        check_value("dataset", ds)
        if ds not in DEFAULT_PRESET:
            raise ConfigError(f"dataset {ds!r} has no default preset; name one with --preset "
                              f"({', '.join(PRESETS)})")
        base_name = DEFAULT_PRESET[ds]
    else:
        base_name = preset
    settings = dict(PRESETS[base_name]["settings"])
    if dataset is not None and dataset != settings["dataset"]:
        raise ConfigError(f"preset {base_name!r} is for dataset {settings['dataset']!r}, "
                          f"not {dataset!r}")
    settings["preset"] = preset
    settings.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(settings) - set(DECLARED))
    if unknown:
        raise ConfigError(f"unknown settings {unknown}")
    return check(Config(**settings))

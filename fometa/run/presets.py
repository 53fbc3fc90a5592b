"""Presets: the papers' experiments as data, and `resolve` from a preset and flags to a Config.

`resolve` starts from a preset (or the dataset's default one), applies the settings given
and checks the result.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

from fometa.algorithms import get_rule
from fometa.errors import ConfigError
from fometa.run.settings import DECLARED, Config, check, check_value


class Preset(NamedTuple):
    """A row of a paper's experiments: the settings that run it, where it comes from, what
    the paper reports, and where fometa's computation differs from the source on purpose.

    paper: results.json key -> the paper's "mean +/- ci95" in percent, as printed there,
    e.g. {"eval": "95.39 +/- 0.09", "eval_transductive": "97.68 +/- 0.04"}; empty where the
    paper reports no number.
    """

    settings: dict[str, Any]
    source: str
    paper: dict[str, str]
    differences: str = ""


def paper_result(preset: Preset) -> str:
    """The paper's numbers as text: "95.39 +/- 0.09% (transductive 97.68 +/- 0.04%)"."""
    parts = {k: f"{v}%" for k, v in preset.paper.items()}
    if not parts:
        return "(no number)"
    if "eval" not in parts:
        return f"transductive {parts['eval_transductive']}"
    return parts["eval"] + (f" (transductive {parts['eval_transductive']})"
                            if "eval_transductive" in parts else "")


def paper_numbers(preset: Preset) -> dict[str, tuple[float, float]]:
    """The paper's numbers as floats: results.json key -> (mean, ci95) in percent."""
    return {k: tuple(float(x) for x in v.split("+/-")) for k, v in preset.paper.items()}


# Presets name rows of the papers' experiments.
_SINE = dict(dataset="sine", eval_tasks=1000, queries=10, shots=10, inner_optimizer="sgd")
PRESETS: dict[str, Preset] = {
    "reptile-sine": Preset(
        dict(_SINE, algorithm="reptile", train_shots=50, inner_iters=5,
             inner_batch=10, inner_lr=0.02, meta_iters=30000, meta_batch=1,
             meta_step=0.1, meta_step_final=0.0, eval_inner_iters=32,
             sine_phase_max=2 * math.pi, sine_on_grid=True, hidden=(64, 64), activation="tanh"),
        "Nichol et al. 2018, Fig. 1", {}),
    "maml-sine": Preset(
        dict(_SINE, algorithm="maml", train_shots=10, inner_iters=1,
             inner_batch=None, inner_lr=0.01, meta_iters=70000, meta_batch=25,
             outer_lr=1e-3, eval_inner_iters=10, sine_phase_max=math.pi,
             sine_on_grid=False, hidden=(40, 40), activation="relu"),
        "Finn et al. 2017, Sec. 5.1 (K = 10)", {}),
}

# Reptile rows: the paper's Table 3 (appendix A) hyperparameters and its README's commands
# (openai/supervised-reptile). Its inner Adam (beta1 = 0) minimises the summed
# cross-entropy (models.py: minimize() of the unreduced loss vector), and its state runs
# on through the meta-batch's tasks, one after another, and into evaluation (reptile.py:
# only the model's variables are exported and restored). One query per class is drawn only
# to log a query loss. Accuracies: the paper's Tables 1 and 2.
_REPTILE = dict(algorithm="reptile", inner_optimizer="adam", carry_inner_state=True,
                loss_reduction="sum", task_order="sequential",
                meta_step=1.0, meta_step_final=0.0, meta_batch=5, queries=1,
                eval_inner_iters=50, eval_tasks=10000)
_REPTILE_SOURCE = "Nichol et al. 2018, Table {}; openai/supervised-reptile README"
_REPTILE_DIFFERENCES = ("a meta-batch's training tasks are sampled in one vmapped call "
                        "(the paper's code samples them from Python's random module); "
                        "evaluation reports both modes from one training, the paper's "
                        "code trains once per mode")
for ways, shots, paper, transductive in ((5, 1, "95.39 +/- 0.09", "97.68 +/- 0.04"),
                                         (5, 5, "98.90 +/- 0.10", "99.48 +/- 0.06"),
                                         (20, 1, "88.14 +/- 0.15", "89.43 +/- 0.14"),
                                         (20, 5, "96.65 +/- 0.33", "97.12 +/- 0.32")):
    five = ways == 5
    PRESETS[f"reptile-omniglot-{ways}w{shots}s"] = Preset(
        dict(_REPTILE, dataset="omniglot", ways=ways, shots=shots, train_shots=10,
             inner_lr=0.001 if five else 0.0005, inner_batch=10 if five else 20,
             inner_iters=5 if five else 10, meta_iters=100000 if five else 200000,
             eval_inner_batch=5 if five else 10),
        _REPTILE_SOURCE.format(1),
        {"eval": paper, "eval_transductive": transductive},
        _REPTILE_DIFFERENCES)
for shots, paper, transductive in ((1, "47.07 +/- 0.26", "49.97 +/- 0.32"),
                                   (5, "62.74 +/- 0.37", "65.99 +/- 0.58")):
    PRESETS[f"reptile-mini-imagenet-5w{shots}s"] = Preset(
        dict(_REPTILE, dataset="mini-imagenet", ways=5, shots=shots, train_shots=15,
             inner_lr=0.001, inner_batch=10, inner_iters=8, meta_iters=100000,
             eval_inner_batch=5 if shots == 1 else 15),
        _REPTILE_SOURCE.format(2),
        {"eval": paper, "eval_transductive": transductive},
        _REPTILE_DIFFERENCES)

# MAML and first-order MAML rows: Finn et al. 2017 (cbfinn/maml: its README's commands and
# main.py): inner SGD on the whole support of the cross-entropy summed over the batch and
# divided by K (utils.xent / update_batch_size), K query examples per class (15 on
# Mini-ImageNet), outer Adam 1e-3 (meta-gradients clipped to [-10, 10] on Mini-ImageNet),
# 60,000 meta-iterations, 10 inner steps at test time, MAML's Omniglot split sizes with
# rotations everywhere. Accuracies (transductive: batch-norm statistics from the query
# batch, as MAML's code) as quoted in the Reptile paper's Tables 1 and 2.
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
_MAML_DIFFERENCES = (
    "the Reptile paper's networks (MAML's Omniglot network averages its last 2x2 feature "
    "map, its batch norm has no learned scale and its batch-norm offsets are not adapted in "
    "the inner loop); images not inverted (MAML's Omniglot is 1 - x); evaluation on "
    "10,000 tasks with one query per class, so transductive batch statistics come from N "
    "queries (MAML: 600 tasks, K queries per class); a rotation is a class of its own "
    "(MAML draws one rotation per character and task); the split is 1100/100/423 "
    "characters by a fixed shuffle (MAML's follows os.listdir's order)")
for (algorithm, dataset, ways, shots), accuracy in _MAML_PAPER.items():
    common = dict(algorithm=algorithm, dataset=dataset, ways=ways, shots=shots,
                  train_shots=shots, inner_optimizer="sgd", inner_batch=None,
                  loss_reduction="sum/shots", carry_inner_state=False, outer_lr=1e-3,
                  meta_iters=60000, eval_inner_iters=10, eval_inner_batch=None,
                  eval_tasks=10000)
    if dataset == "omniglot":
        common.update(queries=shots, omniglot_split="maml", inner_lr=0.4 if ways == 5 else 0.1,
                      inner_iters=1 if ways == 5 else 5, meta_batch=32 if ways == 5 else 16)
    else:
        common.update(queries=15, inner_lr=0.01, inner_iters=5, meta_batch=4 if shots == 1 else 2,
                      outer_clip=10.0)
    PRESETS[f"{algorithm}-{dataset}-{ways}w{shots}s"] = Preset(
        common, "Finn et al. 2017 (cbfinn/maml), as quoted by Nichol et al. 2018, Table "
        f"{1 if dataset == 'omniglot' else 2}",
        {"eval_transductive": accuracy}, _MAML_DIFFERENCES)

# CIFAR-FS (Bertinetto et al. 2019; not in the Reptile paper): Mini-ImageNet's Reptile and
# MAML settings on CIFAR-100's 32x32 images; no number of the papers' to compare with.
for algorithm, base in (("reptile", "reptile-mini-imagenet-5w1s"),
                        ("maml", "maml-mini-imagenet-5w1s")):
    PRESETS[f"{algorithm}-cifar-fs-5w1s"] = Preset(
        dict(PRESETS[base].settings, dataset="cifar-fs"),
        f"Bertinetto et al. 2019 (CIFAR-FS) with the settings of {base}", {},
        "a benchmark the Reptile paper does not run: its settings are Mini-ImageNet's")

# The preset a (dataset, algorithm) starts from when none is named: the algorithm's own
# row, else the dataset's row of the same family ("reptile" for rules that interpolate,
# "maml" for the others). A dataset without an entry starts from the settings' defaults.
DEFAULT_PRESET: dict[str, dict[str, str]] = {
    "sine": {"reptile": "reptile-sine", "maml": "maml-sine"},
    "omniglot": {"reptile": "reptile-omniglot-5w1s", "maml": "maml-omniglot-5w1s",
                 "fomaml": "fomaml-omniglot-5w1s"},
    "mini-imagenet": {"reptile": "reptile-mini-imagenet-5w1s",
                      "maml": "maml-mini-imagenet-5w1s", "fomaml": "fomaml-mini-imagenet-5w1s"},
    "cifar-fs": {"reptile": "reptile-cifar-fs-5w1s", "maml": "maml-cifar-fs-5w1s"},
}


def default_preset(dataset: str, algorithm: str) -> str | None:
    """The preset that `fometa train --dataset D --algorithm A` starts from (None: the
    settings' defaults)."""
    rows = DEFAULT_PRESET.get(dataset)
    if rows is None:
        return None
    family = "reptile" if get_rule(algorithm).interpolates else "maml"
    return rows.get(algorithm, rows[family])


def resolve(dataset: str | None = None, preset: str | None = None, **overrides: Any) -> Config:
    """The config for a run: `preset`, or the (dataset, algorithm) pair's default preset
    (`default_preset`), then `overrides`.

    Overrides whose value is None are ignored, so CLI flags left out keep the preset's value.
    """
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; run 'fometa presets' to list them "
                          f"({', '.join(PRESETS)})")
    if preset is None:
        ds = dataset or "sine"
        check_value("dataset", ds)
        algorithm = overrides.get("algorithm") or "reptile"
        check_value("algorithm", algorithm)
        base_name = default_preset(ds, algorithm)
        settings = dict(PRESETS[base_name].settings) if base_name else {"dataset": ds}
    else:
        base_name = preset
        settings = dict(PRESETS[preset].settings)
    if dataset is not None and dataset != settings["dataset"]:
        raise ConfigError(f"preset {base_name!r} is for dataset {settings['dataset']!r}, "
                          f"not {dataset!r}")
    settings["preset"] = preset
    settings.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(settings) - set(DECLARED))
    if unknown:
        raise ConfigError(f"unknown settings {unknown}")
    return check(Config(**settings))


def resolve_from(cfg: Config, **overrides: Any) -> Config:
    """`cfg` (a saved run's settings) with `overrides` applied (None: keep), checked."""
    unknown = sorted(set(overrides) - set(DECLARED))
    if unknown:
        raise ConfigError(f"unknown settings {unknown}")
    return check(dataclasses.replace(cfg, **{k: v for k, v in overrides.items()
                                             if v is not None}))

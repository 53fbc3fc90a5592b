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
    """The paper's numbers as floats: results.json key -> (mean, ci95) in percent; ci95 is
    NaN where the paper's table gives the mean alone."""
    return {k: (float(v.split("+/-")[0]),
                float(v.split("+/-")[1]) if "+/-" in v else math.nan)
            for k, v in preset.paper.items()}


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

# The paper's successors (not in the Reptile paper), each on the settings of the MAML row
# of the same task shape unless its code says otherwise. Numbers: each paper's own tables
# (transductive batch norm, as MAML's code), means only.
_SUCCESSOR_DIFFERENCES = ("the Reptile paper's networks, evaluation on 10,000 tasks with "
                          "one query per class (see the MAML rows)")
for ways, shots, dataset, accuracy in ((5, 1, "omniglot", "99.53"), (5, 5, "omniglot", "99.93"),
                                       (5, 1, "mini-imagenet", "50.47"),
                                       (5, 5, "mini-imagenet", "64.03")):
    PRESETS[f"meta-sgd-{dataset}-{ways}w{shots}s"] = Preset(
        dict(PRESETS[f"maml-{dataset}-{ways}w{shots}s"].settings, algorithm="meta-sgd",
             inner_iters=1, eval_inner_iters=1),
        "Li et al. 2017 (Meta-SGD), Tables 1 and 2", {"eval_transductive": accuracy},
        "no released code: MAML's row settings with the paper's one inner step in training "
        "and evaluation; every rate starts at inner-lr (the paper draws them from "
        "[0.005, 0.1]: --inner-lr 0.1 --inner-lr-low 0.005, with a loss whose scale the "
        "paper does not give); " + _SUCCESSOR_DIFFERENCES)
for ways, shots, dataset, accuracy in ((20, 1, "omniglot", "96.2"), (20, 5, "omniglot", "98.0"),
                                       (5, 1, "mini-imagenet", "46.7"),
                                       (5, 5, "mini-imagenet", "61.5")):
    PRESETS[f"anil-{dataset}-{ways}w{shots}s"] = Preset(
        dict(PRESETS[f"maml-{dataset}-{ways}w{shots}s"].settings, algorithm="anil"),
        "Raghu et al. 2020 (ANIL), Table 2; MAML's settings, the inner loop adapts the "
        "output layer", {"eval_transductive": accuracy}, _SUCCESSOR_DIFFERENCES)
# MAML++ (AntreasAntoniou/HowToTrainYourMAMLPytorch, experiment_config/*maml++*.json):
# 5 inner steps in training and evaluation, per-layer per-step inner rates, per-step batch
# norm weights and biases (per_step_bn_statistics, learnable_bn_gamma/beta), the multi-step
# loss over the first 10 (Omniglot) or 15 (Mini-ImageNet) epochs of 500 iterations, second
# order throughout (first_order_to_second_order_epoch -1), 100 epochs, cosine annealing of
# Adam's 0.001 to min_learning_rate (0.00001; 0.001 on Mini-ImageNet: constant), the mean
# cross-entropy (F.cross_entropy).
for ways, shots, dataset, accuracy in ((20, 1, "omniglot", "97.65"), (20, 5, "omniglot", "99.33"),
                                       (5, 1, "mini-imagenet", "52.15"),
                                       (5, 5, "mini-imagenet", "68.32")):
    omniglot = dataset == "omniglot"
    PRESETS[f"mamlpp-{dataset}-{ways}w{shots}s"] = Preset(
        dict(PRESETS[f"maml-{dataset}-{ways}w{shots}s"].settings, algorithm="maml",
             learn_inner_lr="per-layer-step", per_step_bn=True,
             inner_lr=0.1 if omniglot else 0.01,
             inner_iters=5, eval_inner_iters=5, loss_reduction="mean",
             queries=1 if omniglot else 15, meta_batch=8 if omniglot else 2,
             meta_iters=50000, multi_step_iters=5000 if omniglot else 7500,
             outer_lr_final=1e-5 if omniglot else 1e-3, outer_clip=None),
        "Antoniou et al. 2019 (MAML++), Tables 1 and 2; HowToTrainYourMAMLPytorch configs",
        {"eval_transductive": accuracy},
        "per-step batch-norm weights and biases but no per-step running statistics (batch "
        "norm uses each batch's statistics, as the Reptile paper's networks and as MAML++'s "
        "code in effect does: it keeps per-step statistics and never normalises with them); "
        "the query loss of the multi-step loss after step k uses step k's batch-norm values "
        "in MAML++, the next step's in fometa (the last step's after the last); 32 filters "
        "on Mini-ImageNet (MAML++: 48); the multi-step weights anneal every meta-iteration (MAML++: every epoch of "
        "500); the paper reports an ensemble of its 5 best validation models, fometa the "
        "final model; " + _SUCCESSOR_DIFFERENCES)
# iMAML (aravindr93/imaml_dev, examples/README.md: inner SGD 0.1 on the whole support for
# 16 steps, meta-batch 32, Adam 0.001, lam 2.0, 5 CG steps, 20,000 meta-steps; evaluation
# adapts without the proximal term, --lam 0.0, for 16 steps).
for ways, shots, dataset, accuracy in ((5, 1, "omniglot", "99.50"), (5, 5, "omniglot", "99.74"),
                                       (20, 1, "omniglot", "96.18"),
                                       (20, 5, "omniglot", "99.14"),
                                       (5, 1, "mini-imagenet", "49.30")):
    PRESETS[f"imaml-{dataset}-{ways}w{shots}s"] = Preset(
        dict(PRESETS[f"maml-{dataset}-{ways}w{shots}s"].settings, algorithm="imaml",
             inner_lr=0.1 if dataset == "omniglot" else 0.01, inner_iters=16,
             eval_inner_iters=16, loss_reduction="mean", meta_batch=32 if ways == 5 else 16,
             meta_iters=20000, imaml_lambda=2.0, cg_steps=5, outer_clip=None),
        "Rajeswaran et al. 2019 (iMAML), Table 2 and 3; imaml_dev's example command",
        {"eval_transductive": accuracy},
        "the paper's implicit gradient, (I + H / lam)^-1 g: imaml_dev's code solves "
        "(2 I + H / (lam + 10)) v = g after an unregularised inner loop and one proximal step; "
        "20-way and Mini-ImageNet settings were not released (the 5-way ones with MAML's task "
        "sizes); " + _SUCCESSOR_DIFFERENCES)

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
                 "fomaml": "fomaml-omniglot-5w1s", "meta-sgd": "meta-sgd-omniglot-5w1s",
                 "anil": "anil-omniglot-20w1s", "imaml": "imaml-omniglot-5w1s"},
    "mini-imagenet": {"reptile": "reptile-mini-imagenet-5w1s",
                      "maml": "maml-mini-imagenet-5w1s", "fomaml": "fomaml-mini-imagenet-5w1s",
                      "meta-sgd": "meta-sgd-mini-imagenet-5w1s",
                      "anil": "anil-mini-imagenet-5w1s", "imaml": "imaml-mini-imagenet-5w1s"},
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

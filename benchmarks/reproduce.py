"""One command per row of the paper: train a preset, evaluate both modes, write results/ROW.json.

    python benchmarks/reproduce.py --preset reptile-omniglot-5w1s [--seeds 1]
        [--also reptile-omniglot-5w5s] [--variant NAME -- FLAGS...]
        [--evaluate-with loss_reduction=sum]

For each seed, `fometa train --preset NAME --seed S [FLAGS]` runs into
`runs/reproduce/LABEL/seedS` (LABEL: the preset, or `NAME+VARIANT`); an interrupted run
resumes and a finished one is not trained again. `--also ROW` evaluates the same trained
state as another preset that differs from it only in evaluation settings (the paper's code
trains 5-way 1-shot and 5-shot Omniglot with the same flags; `--shots` changes only its
evaluation). Each row's `results/LABEL.json` holds the paper's numbers, fometa's mean and
ci95 in both modes for every seed and over the seeds, the command, wall time, hardware and
versions. `benchmarks/results_table.py` makes the table from those files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import jax
import numpy as np

from fometa.errors import reporting
from fometa.run import PRESETS, resolve, train
from fometa.run.cli import build_parser, given_settings
from fometa.run.presets import paper_numbers, paper_result
from fometa.run.processes import compile_cache
from fometa.run.settings import DECLARED, evaluation_settings, flags, parse
from fometa.run.training import evaluate_run, versions

MODES = ("eval", "eval_transductive")


def train_flags(args: argparse.Namespace) -> dict:
    """The settings among `fometa train` flags parsed by fometa's own parser (checked)."""
    return {k: v for k, v in given_settings(args, [n for n, _ in flags()]).items()
            if v is not None}


def hardware() -> dict:
    info = Path("/proc/cpuinfo")
    names = [l.split(":", 1)[1].strip() for l in info.read_text().splitlines()
             if l.startswith("model name")] if info.exists() else []
    cpu = names[0] if names else platform.processor()
    return {"devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
            "cpu": cpu, "cpu_cores": os.cpu_count(), "platform": platform.platform()}


def across_seeds(per_seed: list[dict]) -> dict:
    """Per mode: the mean over seeds of each seed's metric (accuracy in percent); `ci95` is
    the mean of the seeds' per-task intervals, `seed_std` the standard deviation between
    seeds."""
    out = {}
    for mode in MODES:
        runs = [s[mode] for s in per_seed if mode in s]
        if not runs:
            continue
        scale = 100.0 if runs[0]["metric"] == "accuracy" else 1.0
        means = [scale * r["mean"] for r in runs]
        intervals = [scale * r["ci95"] for r in runs if r["ci95"] is not None]
        out[mode] = {"metric": runs[0]["metric"], "mean": float(np.mean(means)),
                     "ci95": float(np.mean(intervals)) if intervals else None,
                     "seed_std": float(np.std(means, ddof=1)) if len(means) > 1 else None,
                     "seeds": len(means), "tasks": runs[0]["tasks"]}
    return out


def row_file(label: str, preset: str, trained_as: str, flags_given: dict, command: str,
             per_seed: list[dict], wall: float, evaluated_with: dict | None = None) -> dict:
    p = PRESETS[preset]
    ours = across_seeds(per_seed)
    gaps = {}
    for mode, (mean, _) in paper_numbers(p).items():
        if mode in ours:
            gaps[mode] = ours[mode]["mean"] - mean
    return {"row": label, "preset": preset, "trained_as": trained_as,
            "flags": flags_given, "evaluated_with": evaluated_with or {},
            "source": p.source, "paper": p.paper,
            "paper_text": paper_result(p), "differences": p.differences,
            "fometa": ours, "minus_paper": gaps, "per_seed": per_seed, "command": command,
            "wall_seconds": wall, "hardware": hardware(), "versions": versions()}


def main(argv: list[str] | None = None) -> int:
    return reporting("reproduce", _main, argv)


def _main(argv: list[str]) -> int:
    command = shlex.join(["python", "benchmarks/reproduce.py", *argv])
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    train_args = build_parser().parse_args(["train", *extra])
    # As `fometa train` (before any compile; `-- --compile-cache DIR|off` as there): the
    # seeds after the first load the compiled programs.
    compile_cache(train_args.compile_cache)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, choices=list(PRESETS))
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1")
    parser.add_argument("--also", action="append", default=[], metavar="ROW",
                        help="another preset to evaluate from the same training")
    parser.add_argument("--variant", help="a name for the settings after --")
    parser.add_argument("--evaluate-with", action="append", default=[], metavar="NAME=VALUE",
                        help="re-evaluate the trained state with this evaluation setting "
                             "(e.g. loss_reduction=sum); the rows are labelled @NAME=VALUE")
    parser.add_argument("--runs", default="runs/reproduce", help="folder of the run dirs")
    parser.add_argument("--out", default="results", help="folder of the result files")
    args = parser.parse_args(argv)
    given = train_flags(train_args)
    for name in ("preset", "dataset"):
        if name in given:
            parser.error(f"--{name} after -- would change the row: use --preset")
    if not args.variant and any(not DECLARED[k].resumable for k in given):
        parser.error("name the settings after -- with --variant (only settings that change "
                     "no number, such as --eval-every, may go without)")
    suffix = f"+{args.variant}" if args.variant else ""
    evaluate_with = {}
    for item in args.evaluate_with:
        name, _, text = item.partition("=")
        if name not in evaluation_settings():
            parser.error(f"--evaluate-with {item}: expected one of {evaluation_settings()}")
        evaluate_with[name] = parse(name, text)
    tag = "".join(f"@{k}={v}" for k, v in evaluate_with.items())
    base = resolve(preset=args.preset, **given)
    for row in args.also:  # the same training: only evaluation settings may differ
        other = resolve(preset=row, **given).to_dict()
        differ = {k for k, v in base.to_dict().items() if other[k] != v} - {"preset"}
        if differ - set(evaluation_settings()):
            parser.error(f"{row} trains differently from {args.preset} "
                         f"({', '.join(sorted(differ - set(evaluation_settings())))})")
    rows = {args.preset: [], **{row: [] for row in args.also}}
    start = time.perf_counter()
    for seed in range(args.seeds):
        run_dir = Path(args.runs) / f"{args.preset}{suffix}" / f"seed{seed}"
        results = train(resolve(preset=args.preset, seed=seed, **given), run_dir, progress=False)
        if not evaluate_with:
            rows[args.preset].append({"seed": seed, "run_dir": str(run_dir),
                                      "train_seconds": results["train_seconds"],
                                      **{m: results[m] for m in MODES if m in results}})
        for row in (args.also if not evaluate_with else [args.preset, *args.also]):
            cfg = resolve(preset=row, seed=seed, **given).to_dict()
            overrides = {**{k: cfg[k] for k in evaluation_settings()}, **evaluate_with}
            evals = evaluate_run(run_dir, write=False, **overrides)
            rows[row].append({"seed": seed, "run_dir": str(run_dir),
                              **{m: evals[m] for m in MODES if m in evals}})
    wall = time.perf_counter() - start
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for row, per_seed in rows.items():
        label = f"{row}{suffix}{tag}"
        out = Path(args.out) / f"{label}.json"
        out.write_text(json.dumps(row_file(label, row, args.preset, given, command, per_seed,
                                           wall, evaluate_with), indent=1) + "\n")
        ours = across_seeds(per_seed)
        line = ", ".join(f"{m} {v['mean']:.4g}" for m, v in ours.items())
        print(f"{label}: {line} (paper {paper_result(PRESETS[row])}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

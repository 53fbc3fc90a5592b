"""The `fometa` command: train, eval, presets."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"fometa: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (expected >= 1)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not allowed (expected a whole number >= 1)")
    return value


def _rate(text: str, allow_zero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise argparse.ArgumentTypeError(
            f"{text} is not allowed (expected a finite number {'>= 0' if allow_zero else '> 0'})")
    return value


def _nonneg_rate(text: str) -> float:
    return _rate(text, allow_zero=True)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not allowed (expected a whole number >= 0)")
    return value


def build_parser() -> argparse.ArgumentParser:
    from fometa.algorithms import ALGORITHMS
    from fometa.config import CONVS, DATASETS, DTYPES, INNER_OPTIMIZERS, OMNIGLOT_SPLITS

    parser = _Parser(prog="fometa", description="MAML, FOMAML and Reptile in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="meta-train, evaluate and write a run directory")
    t.add_argument("--dataset", choices=DATASETS, help="task family (default: sine)")
    t.add_argument("--algorithm", choices=ALGORITHMS, help="meta-learning algorithm")
    t.add_argument("--preset", help="a row of the paper's experiments (see 'fometa presets')")
    t.add_argument("--ways", type=_positive_int, help="classes per task")
    t.add_argument("--shots", type=_positive_int, help="support examples per class at evaluation")
    t.add_argument("--train-shots", type=_positive_int, help="examples per class in a training task")
    t.add_argument("--queries", type=_positive_int, help="query examples per class (sine: points) in a training task")
    t.add_argument("--meta-iters", type=_positive_int, help="meta-iterations")
    t.add_argument("--meta-batch", type=_positive_int, help="tasks per meta-iteration")
    t.add_argument("--inner-iters", type=_positive_int, help="inner steps per task in training")
    t.add_argument("--inner-batch", type=_positive_int, help="minibatch size of an inner step")
    t.add_argument("--inner-lr", type=_rate, help="inner learning rate")
    t.add_argument("--inner-optimizer", choices=INNER_OPTIMIZERS,
                   help="inner optimizer (adam: the paper's, beta1 = 0)")
    t.add_argument("--carry-inner-state", action=argparse.BooleanOptionalAction, default=None,
                   help="carry the inner optimizer state across tasks (the paper's Reptile)")
    t.add_argument("--outer-lr", type=_rate, help="MAML/FOMAML meta-optimizer (Adam) step size")
    t.add_argument("--meta-step", type=_rate, help="Reptile's initial meta step size")
    t.add_argument("--meta-step-final", type=_nonneg_rate, help="Reptile's final meta step size")
    t.add_argument("--eval-tasks", type=_positive_int, help="evaluation tasks")
    t.add_argument("--eval-inner-iters", type=_positive_int, help="inner steps at evaluation")
    t.add_argument("--eval-inner-batch", type=_positive_int,
                   help="minibatch of an evaluation inner step (default: the whole support)")
    t.add_argument("--omniglot-split", choices=OMNIGLOT_SPLITS,
                   help="paper: 1200/423 characters, training ones rotated; maml: 1100/100/423, all rotated")
    t.add_argument("--conv", choices=CONVS,
                   help="convolution: patch (matmul, fast on CPU), xla, or auto (per platform)")
    t.add_argument("--remat", action=argparse.BooleanOptionalAction, default=None,
                   help="rematerialise each inner step in the backward pass (MAML memory)")
    t.add_argument("--dtype", choices=DTYPES, help="compute dtype (bfloat16: mixed precision)")
    t.add_argument("--devices", help="devices to shard the task batch over: N or 'all'")
    t.add_argument("--unroll", type=_positive_int, help="lax.scan unroll of the inner loop")
    t.add_argument("--log-every", type=_positive_int, help="meta-iterations per logged chunk")
    t.add_argument("--checkpoint-every", type=_positive_int,
                   help="meta-iterations between checkpoints, at chunk ends (default: 10 chunks)")
    t.add_argument("--eval-every", type=_positive_int,
                   help="meta-iterations between evaluations on min(eval-tasks, 1000) tasks, "
                        "at chunk ends (default: only the final evaluation)")
    t.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to RUN_DIR/tensorboard "
                        "(needs tensorboardX)")
    t.add_argument("--seed", type=_seed, help="PRNG seed")
    t.add_argument("--data-dir", help="folder of the dataset files (image datasets)")
    t.add_argument("--run-dir", help="output folder (default: runs/<dataset>-<algorithm>-<time>); "
                   "rerunning a command with the same --run-dir resumes it from its newest checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", help="re-evaluate a run's newest checkpoint")
    e.add_argument("--run-dir", required=True, help="a run directory written by 'fometa train'")
    e.add_argument("--eval-tasks", type=_positive_int, help="evaluation tasks")
    e.add_argument("--eval-inner-iters", type=_positive_int, help="inner steps at evaluation")

    p = sub.add_parser("plot", help="overlay the learning curves of one or more runs")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    p.add_argument("--out", help="image file to write (default: chosen by fometa.plots)")

    sub.add_parser("presets", help="list the presets with the paper's number for each")
    return parser


SETTINGS = ("algorithm", "ways", "shots", "train_shots", "queries", "meta_iters", "meta_batch",
            "inner_iters", "inner_batch", "inner_lr", "inner_optimizer", "carry_inner_state",
            "outer_lr", "meta_step", "meta_step_final", "eval_tasks", "eval_inner_iters",
            "eval_inner_batch", "omniglot_split", "conv", "data_dir", "unroll", "remat", "dtype",
            "devices", "log_every", "checkpoint_every", "eval_every", "seed")


def _train(args) -> int:
    from fometa.config import resolve
    from fometa.train import train

    cfg = resolve(args.dataset, args.preset, **{k: getattr(args, k) for k in SETTINGS})
    run_dir = Path(args.run_dir or f"runs/{cfg.dataset}-{cfg.algorithm}-{time.strftime('%Y%m%d-%H%M%S')}")
    results = train(cfg, run_dir, progress=not args.no_progress, tensorboard=args.tensorboard)
    if results.get("already_complete"):
        print(f"run dir {run_dir} already holds this run, complete at meta-iteration "
              f"{results['meta_iterations']}; its results.json:")
    elif results.get("resumed_from"):
        print(f"resumed at meta-iteration {results['resumed_from']}")
    ev = results["eval"]
    line = (f"{ev['metric']} after {cfg.eval_inner_iters} inner steps on {ev['tasks']} tasks: "
            f"{ev['mean']:.4f} +/- {ev['ci95']:.4f}")
    if "eval_transductive" in results:
        tr = results["eval_transductive"]
        line += f" (transductive {tr['mean']:.4f} +/- {tr['ci95']:.4f})"
    print(f"{line}  [{results['wall_seconds']:.1f} s; run dir {run_dir}]")
    return 0


def _eval(args) -> int:
    from fometa.train import evaluate_run

    print(json.dumps(evaluate_run(args.run_dir, eval_tasks=args.eval_tasks,
                                  eval_inner_iters=args.eval_inner_iters)))
    return 0


def _plot(args) -> int:
    from fometa.config import ConfigError

    run_dirs = [Path(d) for d in args.run_dirs]
    for d in run_dirs:
        if not (d / "metrics.jsonl").is_file():
            raise ConfigError(f"{d / 'metrics.jsonl'} not found; expected a run directory "
                              "written by 'fometa train'")
    from fometa.plots import plot_runs

    out = plot_runs(run_dirs, Path(args.out) if args.out else None)
    print(out)
    return 0


def _presets(args) -> int:
    from fometa.config import PRESETS

    for name, preset in PRESETS.items():
        s = preset["settings"]
        shape = f"{s['ways']}-way {s['shots']}-shot" if s.get("ways") else ""
        print(f"{name:28s} {shape:15s} paper: {preset['paper']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from fometa.config import ConfigError
    from fometa.data import DataError

    args = build_parser().parse_args(argv)
    try:
        return {"train": _train, "eval": _eval, "plot": _plot,
                "presets": _presets}[args.command](args)
    except (ConfigError, DataError) as e:
        print(f"fometa: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # TrainingInterrupted says where and how to resume
        print(f"fometa: {e or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

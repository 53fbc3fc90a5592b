"""The paper's Sec. 6 experiments on 5-way 5-shot Omniglot, as runs of `fometa train`.

    python benchmarks/sec6.py gradients [--meta-iters N] [--eval-every N] [--eval-tasks N]
    python benchmarks/sec6.py overlap   [--meta-iters N] [--eval-every N] [--eval-tasks N]
        [--only NAME ...] [--runs DIR] [--out FILE.json] [--figure FILE.png]

gradients (Sec. 6.2, "different inner-loop gradient combinations"): supervised-reptile's
README commands, flag for flag: SGD in both loops (inner learning rate 0.003 on the summed
cross-entropy of 25 images, no state), meta-batch 1, meta step 0.25 (or 0.125, 0.08325,
0.0625) annealed to 0, k in {1, 2, 3, 4} inner steps on k non-overlapping minibatches (5k
training shots per class, no training query: the paper's code draws none, and k = 4 uses
all 20 images of an Omniglot class), evaluation after 5 steps on the 25 support images.
Reptile with k steps moves along the sum of the k gradients g1 + ... + gk (and, with the
meta step divided by k, their mean); the paper's FOML (`--foml`, here `--algorithm foml`)
along the last one, gk. The paper's finding: gk alone learns little for k = 1 (that is
joint training) and well for k >= 2; sums of gradients learn faster than single ones.

overlap (Sec. 6.3, "overlap between inner-loop minibatches"): Reptile, FOML whose last
minibatch is part of the cycle (shared tail), the same with minibatches drawn with
replacement (`--replacement`), and FOML with a separate tail (`--foml-tail`: the last
minibatch holds examples no other one has), swept over the number of inner steps (2, 4, 8;
batches of 10) and the inner batch size (5, 15, 25; 4 steps), from pools of 10 training
shots per class, with the losses, optimizers and meta steps of `gradients`. The paper's
figure does not list its settings; these are ours. The paper's finding: FOML with a shared
tail gets worse as the overlap grows (more steps, larger batches); Reptile and FOML with a
separate tail do not.

Every run resumes where it stopped and a finished one is not trained again. Writes the
curves (accuracy on `--eval-tasks` tasks, non-transductive, every `--eval-every`
meta-iterations) and the final evaluations to results/sec6/EXPERIMENT.json and the figure to
docs/sec6_EXPERIMENT.png.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from fometa.errors import reporting
from fometa.run import RunDir, resolve, train
from fometa.run.plots import new_figure

# The gradients experiment's shared flags (supervised-reptile README: $shared, and
# run_omniglot.py's defaults: 5 classes, 5 shots, meta-batch 1).
SHARED = dict(dataset="omniglot", ways=5, shots=5, queries=0, inner_optimizer="sgd",
              inner_lr=0.003, loss_reduction="sum", carry_inner_state=False,
              task_order="parallel", inner_batch=25, meta_batch=1, meta_step_final=0.0,
              eval_inner_batch=25, eval_inner_iters=5)


def _gradient_runs() -> dict[str, dict]:
    runs = {"g1": dict(algorithm="reptile", inner_iters=1, meta_step=0.25)}
    for k in (2, 3, 4):
        terms = "+".join(f"g{i}" for i in range(1, k + 1)) if k < 4 else "g1+...+g4"
        runs[terms] = dict(algorithm="reptile", inner_iters=k, meta_step=0.25)
        runs[f"({terms})/{k}"] = dict(algorithm="reptile", inner_iters=k,
                                      meta_step={2: 0.125, 3: 0.08325, 4: 0.0625}[k])
        runs[f"g{k}"] = dict(algorithm="foml", inner_iters=k, meta_step=0.25)
    return {name: dict(SHARED, train_shots=5 * s["inner_iters"], **s) for name, s in runs.items()}


OVERLAP_METHODS = {
    "Reptile": dict(algorithm="reptile"),
    "FOML, shared tail (cycled)": dict(algorithm="foml"),
    "FOML, shared tail (replacement)": dict(algorithm="foml", replacement=True),
    "FOML, separate tail": dict(algorithm="foml"),  # with foml_tail = the batch's shots
}
STEPS, BATCH = (2, 4, 8), 10          # the steps sweep, at this batch size
BATCHES, BATCH_STEPS = (5, 15, 25), 4  # the batch sweep, at this number of steps


def _overlap_runs() -> dict[str, dict]:
    points = [(k, BATCH) for k in STEPS] + [(BATCH_STEPS, b) for b in BATCHES]
    runs = {}
    for method, settings in OVERLAP_METHODS.items():
        for steps, batch in points:
            tail = dict(foml_tail=batch // 5) if method.endswith("separate tail") else {}
            runs[f"{method}, {steps} steps, batch {batch}"] = dict(
                SHARED, train_shots=10, inner_iters=steps, inner_batch=batch, meta_step=0.25,
                **settings, **tail)
    return runs


EXPERIMENTS = {"gradients": _gradient_runs, "overlap": _overlap_runs}


def _folder(name: str) -> str:
    return "".join(c if c.isalnum() or c in "+-" else "_" for c in name)


def run_all(experiment: str, runs: dict[str, dict], budget: dict, root: Path) -> dict:
    """Trains every run (resuming) and returns {name: settings, curve, final evaluation}."""
    out = {}
    for name, settings in runs.items():
        run_dir = root / experiment / _folder(name)
        start = time.perf_counter()
        results = train(resolve(**settings, **budget), run_dir, progress=False, plots=False)
        _, evals = RunDir(run_dir).read_metrics()
        curve = [[e["iteration"], e["eval"]["mean"]] for e in evals]
        out[name] = {"settings": settings, "curve": curve, "final": results["eval"],
                     "train_seconds": results["train_seconds"],
                     "seconds": time.perf_counter() - start}
        print(f"{name}: {100 * results['eval']['mean']:.1f}% "
              f"[{out[name]['seconds']:.0f} s]", flush=True)
    return out


def gradients_figure(results: dict, out: Path, title: str) -> None:
    """Accuracy against meta-iterations, one line per gradient combination (paper Fig. 4)."""
    fig = new_figure((8, 4))
    ax = fig.subplots()
    for name, r in results.items():
        its, acc = np.array(r["curve"]).T if r["curve"] else ([], [])
        style = "--" if r["settings"]["algorithm"] == "foml" else ":" if "/" in name else "-"
        ax.plot(its, 100 * np.asarray(acc), style, color=f"C{r['settings']['inner_iters'] - 1}",
                label=name)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("accuracy after 5 steps (%), 5-way 5-shot")
    ax.set_title("\n".join(textwrap.wrap(title, 120)), fontsize=8)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def overlap_figure(results: dict, out: Path, title: str) -> None:
    """Final accuracy against inner steps (batch 10) and inner batch size (4 steps), one
    line per method (paper Fig. 5)."""
    fig = new_figure((10, 4))
    axes = fig.subplots(1, 2, sharey=True)
    for i, method in enumerate(OVERLAP_METHODS):
        for ax, points, x_of in ((axes[0], [(k, BATCH) for k in STEPS], lambda p: p[0]),
                                 (axes[1], [(BATCH_STEPS, b) for b in BATCHES], lambda p: p[1])):
            pts = [(x_of(p), results[f"{method}, {p[0]} steps, batch {p[1]}"]["final"])
                   for p in points if f"{method}, {p[0]} steps, batch {p[1]}" in results]
            if pts:
                xs = [x for x, _ in pts]
                ax.errorbar(xs, [100 * f["mean"] for _, f in pts],
                            yerr=[100 * (f["ci95"] or 0) for _, f in pts], marker="o", capsize=3,
                            color=f"C{i}", label=method)
    axes[0].set_xlabel(f"inner steps (batch {BATCH})")
    axes[1].set_xlabel(f"inner batch size ({BATCH_STEPS} steps)")
    axes[0].set_ylabel("final accuracy (%), 5-way 5-shot")
    axes[0].legend(fontsize=7)
    fig.suptitle("\n".join(textwrap.wrap(title, 140)), fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


FIGURES = {"gradients": gradients_figure, "overlap": overlap_figure}


def main(argv: list[str] | None = None) -> int:
    return reporting("sec6", _main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=list(EXPERIMENTS))
    parser.add_argument("--meta-iters", type=int, default=40000,
                        help="meta-iterations of every run (the paper's code: 40,000)")
    parser.add_argument("--log-every", type=int, default=500)
    parser.add_argument("--eval-every", type=int, default=2000,
                        help="meta-iterations between evaluations (0: only the final one)")
    parser.add_argument("--eval-tasks", type=int, default=500)
    parser.add_argument("--data-dir", help="Omniglot's folder (default: $FOMETA_DATA_DIR)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="a run to include (repeatable; default: all)")
    parser.add_argument("--runs", default="runs/sec6", help="folder of the run dirs")
    parser.add_argument("--out", help="results file (default: results/sec6/EXPERIMENT.json)")
    parser.add_argument("--figure", help="figure (default: docs/sec6_EXPERIMENT.png)")
    args = parser.parse_args(argv)
    runs = EXPERIMENTS[args.experiment]()
    if args.only:
        wanted = args.only
        unknown = [n for n in wanted if n not in runs]
        if unknown:
            parser.error(f"unknown runs {unknown}; expected some of {list(runs)}")
        runs = {n: runs[n] for n in wanted}
    budget = dict(meta_iters=args.meta_iters, log_every=args.log_every,
                  eval_every=args.eval_every or None, eval_tasks=args.eval_tasks,
                  data_dir=args.data_dir)
    start = time.perf_counter()
    results = run_all(args.experiment, runs, budget, Path(args.runs))
    out = Path(args.out or f"results/sec6/{args.experiment}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "benchmarks/sec6.py", *argv])
    out.write_text(json.dumps({"experiment": args.experiment, "command": command,
                               "budget": budget, "seconds": time.perf_counter() - start,
                               "runs": results}, indent=1) + "\n")
    figure = Path(args.figure or f"docs/sec6_{args.experiment}.png")
    FIGURES[args.experiment](results, figure, f"{command}  ({args.meta_iters} meta-iterations)")
    print(f"{out}\n{figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

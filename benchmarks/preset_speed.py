"""A preset's speed: ms per meta-iteration of its compiled training chunk, its compile time,
and ms per task of its evaluation.

    python benchmarks/preset_speed.py --preset reptile-omniglot-5w1s [--conv patch|xla|auto]
        [--iters 50] [--eval-tasks 100] [--eval-curve] [--eval-memory BYTES ...]
        [--eval-chunk K ...] [--eval-repeats R] [--[no-]remat] [--chunk-unroll K]
        [--dtype bfloat16] [--json]

Uses random uint8 images of the dataset's shapes (timing does not depend on the pixels),
so no data is needed. Times `--iters` meta-iterations inside one compiled `lax.scan` (as
`fometa train` runs them) after a warm-up call, median of `--repeats`; then the evaluation
of `--eval-tasks` tasks, compiled ahead, with the preset's inner-steps curve as `fometa
train` evaluates if `--eval-curve`. Several `--eval-memory` budgets or `--eval-chunk` sizes
(tasks adapted to at once) are timed in turn, `--eval-repeats` rounds, median of the rounds.
Prints one line per measurement and, last, a JSON list.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from fometa.data import is_rotated
from fometa.run import (Config, Problem, Splits, chunk_memory, chunk_runner,
                        classification_problem, curve_steps, evaluator, make_learner,
                        make_problem, resolve)
from fometa.run.problems import MATMUL_PRECISIONS, matmul_precision, uses_remat

SHAPES = {"omniglot": ((1200, 20, 28, 28, 1), (423, 20, 28, 28, 1)),
          "mini-imagenet": ((64, 60, 84, 84, 3), (20, 60, 84, 84, 3)),
          "cifar-fs": ((64, 60, 32, 32, 3), (20, 60, 32, 32, 3))}
SAMPLED = ("mini-imagenet", "cifar-fs")  # SHAPES has 60 of their 600 images per class


def synthetic_problem(cfg: Config, images_per_class: int | None = None) -> Problem:
    """`cfg`'s problem, on random uint8 images of its dataset's shapes (SHAPES) in place of
    the dataset's: compiled programs and their speed do not depend on the pixels. SHAPES
    gives Mini-ImageNet and CIFAR-FS 60 images per class of their 600: `images_per_class`
    replaces that number (Omniglot's 20 are its real count)."""
    if cfg.dataset == "sine":
        return make_problem(cfg)
    train_shape, test_shape = SHAPES[cfg.dataset]
    if images_per_class and cfg.dataset in SAMPLED:
        train_shape, test_shape = ((s[0], images_per_class, *s[2:])
                                   for s in (train_shape, test_shape))
    rng = np.random.default_rng(0)
    omniglot = cfg.dataset == "omniglot"
    splits = Splits(rng.integers(0, 256, train_shape, np.uint8),
                    rng.integers(0, 256, test_shape, np.uint8),
                    omniglot and is_rotated(cfg.omniglot_split, "train"),
                    omniglot and is_rotated(cfg.omniglot_split, "test"))
    return classification_problem(cfg, splits)


def measure(preset: str, conv: str, iters: int, repeats: int, eval_tasks: int,
            algorithm: str | None = None, remat: bool | None = None, chunk_unroll: int = 1,
            dtype: str = "float32", precision: str = "default",
            eval_memory: list[int] | None = None, eval_curve: bool = False,
            eval_chunks: list[int] | None = None, eval_repeats: int = 1) -> dict:
    cfg = resolve(preset=preset, conv=conv, algorithm=algorithm, remat=remat, dtype=dtype,
                  matmul_precision=precision)
    with matmul_precision(precision):
        return _measure(cfg, preset, conv, iters, repeats, eval_tasks, chunk_unroll,
                        eval_memory, eval_curve, eval_chunks, eval_repeats)


def compiled_chunk(cfg: Config, iters: int, chunk_unroll: int = 1):
    """`(call, compile_s, learner, problem, state)`: `call()` runs `iters` meta-iterations of
    `cfg` in one compiled `chunk_runner` program (as `fometa train`) and blocks on them."""
    problem = synthetic_problem(cfg)
    learner = make_learner(cfg, problem)
    state = learner.init(problem.init_params(jax.random.PRNGKey(0)))
    run = chunk_runner(learner, problem, cfg.meta_batch, jax.random.PRNGKey(1),
                       unroll=chunk_unroll)
    its = jnp.arange(iters, dtype=jnp.int32)
    t0 = time.perf_counter()
    compiled = run.lower(state, its).compile()
    compile_s = time.perf_counter() - t0
    return (lambda: jax.block_until_ready(compiled(state, its, run.data)), compile_s,
            learner, problem, state)


def _measure(cfg, preset: str, conv: str, iters: int, repeats: int, eval_tasks: int,
             chunk_unroll: int, eval_memory: list[int] | None = None, eval_curve: bool = False,
             eval_chunks: list[int] | None = None, eval_repeats: int = 1) -> dict:
    call, compile_s, learner, problem, state = compiled_chunk(cfg, iters, chunk_unroll)
    call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times) / iters * 1e3
    out = {"preset": preset, "algorithm": cfg.algorithm, "conv": conv,
           "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
           "ms_per_meta_iter": ms, "meta_iters_per_s": 1e3 / ms, "compile_s": compile_s,
           "iters": iters, "chunk_unroll": chunk_unroll,
           "remat": uses_remat(cfg, jax.default_backend()), "dtype": cfg.dtype,
           "matmul_precision": cfg.matmul_precision}
    if eval_tasks:
        steps = curve_steps(cfg.eval_inner_iters) if eval_curve else None
        budgets = {f"memory={m}": m for m in eval_memory or []}
        budgets |= {f"chunk={k}": chunk_memory(problem, k) for k in eval_chunks or []}
        budgets = budgets or {"default": None}
        runs = {name: evaluator(learner, problem, steps=steps, memory=memory)
                for name, memory in budgets.items()}
        for evaluate in runs.values():
            evaluate.prepare(state, jax.random.PRNGKey(3), eval_tasks)  # compiled ahead
        timed: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(eval_repeats):  # alternated, so that drift hits every budget alike
            for name, evaluate in runs.items():
                t0 = time.perf_counter()
                evaluate(state, jax.random.PRNGKey(3), eval_tasks)
                timed[name].append((time.perf_counter() - t0) / eval_tasks * 1e3)
        out["eval_curve"] = eval_curve
        out["eval_ms_per_task"] = {name: statistics.median(t) for name, t in timed.items()}
        out["eval_ms_per_task_rounds"] = timed
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", action="append", required=True)
    parser.add_argument("--algorithm", help="override the preset's algorithm")
    parser.add_argument("--conv", action="append", choices=("auto", "patch", "xla"))
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eval-tasks", type=int, default=0)
    parser.add_argument("--eval-memory", type=int, action="append",
                        help="the evaluator's memory budget in bytes (default: its own)")
    parser.add_argument("--eval-chunk", type=int, action="append",
                        help="evaluation tasks adapted to at once (a budget of that size)")
    parser.add_argument("--eval-curve", action="store_true",
                        help="record the preset's inner-steps curve, as fometa train does")
    parser.add_argument("--eval-repeats", type=int, default=1,
                        help="rounds over the budgets (median of the rounds)")
    parser.add_argument("--remat", action=argparse.BooleanOptionalAction,
                        help="as fometa train --remat / --no-remat (default: the preset's)")
    parser.add_argument("--chunk-unroll", type=int, default=1,
                        help="unroll of the scan over meta-iterations (GPU loop overhead)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default="default")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if (args.eval_memory or args.eval_chunk or args.eval_curve) and not args.eval_tasks:
        parser.error("--eval-memory, --eval-chunk and --eval-curve time an evaluation: "
                     "give --eval-tasks N")
    if args.eval_repeats < 1 or args.repeats < 1:
        parser.error(f"--repeats {args.repeats} --eval-repeats {args.eval_repeats}: "
                     "expected at least 1 each")
    rows = []
    for preset in args.preset:
        for conv in args.conv or ["auto"]:
            row = measure(preset, conv, args.iters, args.repeats, args.eval_tasks, args.algorithm,
                          args.remat, args.chunk_unroll, args.dtype, args.matmul_precision,
                          args.eval_memory, args.eval_curve, args.eval_chunk, args.eval_repeats)
            rows.append(row)
            evals = "".join(f"  eval ({name}) {ms:.2f} ms/task"
                            for name, ms in row.get("eval_ms_per_task", {}).items())
            print(f"{preset:28s} {row['algorithm']:8s} conv={conv:5s} "
                  f"{row['ms_per_meta_iter']:9.2f} ms/meta-iter  compile "
                  f"{row['compile_s']:.1f} s{evals}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

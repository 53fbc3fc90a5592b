"""Milliseconds per meta-iteration of a preset's compiled training step, and compile time.

    python benchmarks/preset_speed.py --preset reptile-omniglot-5w1s [--conv patch|xla|auto]
        [--iters 50] [--eval-tasks 100] [--eval-memory BYTES] [--remat] [--chunk-unroll K]
        [--dtype bfloat16] [--json]

Uses random uint8 images of the dataset's shapes (timing does not depend on the pixels),
so no data is needed. Times `--iters` meta-iterations inside one compiled `lax.scan` (as
`fometa train` runs them) after a warm-up call, median of `--repeats`; then the evaluation
of `--eval-tasks` tasks. Prints one line per measurement and, last, a JSON object.
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
from fometa.run import (Config, Problem, Splits, chunk_runner, classification_problem,
                        evaluator, make_learner, make_problem, resolve)
from fometa.run.problems import MATMUL_PRECISIONS, matmul_precision

SHAPES = {"omniglot": ((1200, 20, 28, 28, 1), (423, 20, 28, 28, 1)),
          "mini-imagenet": ((64, 60, 84, 84, 3), (20, 60, 84, 84, 3)),
          "cifar-fs": ((64, 60, 32, 32, 3), (20, 60, 32, 32, 3))}


def synthetic_problem(cfg: Config) -> Problem:
    """`cfg`'s problem, on random uint8 images of its dataset's shapes (SHAPES) in place of
    the dataset's: compiled programs and their speed do not depend on the pixels."""
    if cfg.dataset == "sine":
        return make_problem(cfg)
    train_shape, test_shape = SHAPES[cfg.dataset]
    rng = np.random.default_rng(0)
    omniglot = cfg.dataset == "omniglot"
    splits = Splits(rng.integers(0, 256, train_shape, np.uint8),
                    rng.integers(0, 256, test_shape, np.uint8),
                    omniglot and is_rotated(cfg.omniglot_split, "train"),
                    omniglot and is_rotated(cfg.omniglot_split, "test"))
    return classification_problem(cfg, splits)


def measure(preset: str, conv: str, iters: int, repeats: int, eval_tasks: int,
            algorithm: str | None = None, remat: bool = False, chunk_unroll: int = 1,
            dtype: str = "float32", precision: str = "default",
            eval_memory: int | None = None) -> dict:
    cfg = resolve(preset=preset, conv=conv, algorithm=algorithm, remat=remat, dtype=dtype,
                  matmul_precision=precision)
    with matmul_precision(precision):
        return _measure(cfg, preset, conv, iters, repeats, eval_tasks, chunk_unroll, eval_memory)


def _measure(cfg, preset: str, conv: str, iters: int, repeats: int, eval_tasks: int,
             chunk_unroll: int, eval_memory: int | None = None) -> dict:
    problem = synthetic_problem(cfg)
    learner = make_learner(cfg, problem)
    state = learner.init(problem.init_params(jax.random.PRNGKey(0)))
    run = chunk_runner(learner, problem, cfg.meta_batch, jax.random.PRNGKey(1),
                       unroll=chunk_unroll)
    its = jnp.arange(iters, dtype=jnp.int32)
    t0 = time.perf_counter()
    compiled = run.lower(state, its).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(state, its, run.data))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(state, its, run.data))
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times) / iters * 1e3
    out = {"preset": preset, "algorithm": cfg.algorithm, "conv": conv,
           "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
           "ms_per_meta_iter": ms, "meta_iters_per_s": 1e3 / ms, "compile_s": compile_s,
           "iters": iters, "chunk_unroll": chunk_unroll, "remat": cfg.remat, "dtype": cfg.dtype,
           "matmul_precision": cfg.matmul_precision}
    if eval_tasks:
        evaluate = evaluator(learner, problem, memory=eval_memory)
        evaluate.prepare(state, jax.random.PRNGKey(3), eval_tasks)  # compiled ahead
        t0 = time.perf_counter()
        evaluate(state, jax.random.PRNGKey(3), eval_tasks)
        out["eval_ms_per_task"] = (time.perf_counter() - t0) / eval_tasks * 1e3
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", action="append", required=True)
    parser.add_argument("--algorithm", help="override the preset's algorithm")
    parser.add_argument("--conv", action="append", choices=("auto", "patch", "xla"))
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eval-tasks", type=int, default=0)
    parser.add_argument("--eval-memory", type=int,
                        help="the evaluator's memory budget in bytes (default: its own)")
    parser.add_argument("--remat", action="store_true", help="as fometa train --remat")
    parser.add_argument("--chunk-unroll", type=int, default=1,
                        help="unroll of the scan over meta-iterations (GPU loop overhead)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default="default")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for preset in args.preset:
        for conv in args.conv or ["auto"]:
            row = measure(preset, conv, args.iters, args.repeats, args.eval_tasks, args.algorithm,
                          args.remat, args.chunk_unroll, args.dtype, args.matmul_precision,
                          args.eval_memory)
            rows.append(row)
            print(f"{preset:28s} {row['algorithm']:8s} conv={conv:5s} {row['ms_per_meta_iter']:9.2f} "
                  f"ms/meta-iter  compile {row['compile_s']:.1f} s"
                  + (f"  eval {row['eval_ms_per_task']:.2f} ms/task" if "eval_ms_per_task" in row else ""),
                  flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

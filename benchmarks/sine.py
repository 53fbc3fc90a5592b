"""Meta-iterations per second on the sine experiment: inner-loop `scan` unrolling, and a
compiled chunk of meta-iterations against one jitted step per host call.

    python benchmarks/sine.py [--iters 5000] [--json]

Prints a table and, last, a JSON line with every measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp

from fometa.run import chunk_runner, make_learner, make_problem, resolve, task_batch


def _time(fn, repeats: int) -> float:
    """Median seconds of `fn()` after one warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for algorithm, preset in (("reptile", "reptile-sine"), ("fomaml", "reptile-sine"),
                              ("maml", "reptile-sine"), ("maml", "maml-sine")):
        for unroll in (1, 5):
            cfg = resolve(preset=preset, algorithm=algorithm, unroll=unroll)
            problem = make_problem(cfg)
            learner = make_learner(cfg, problem)
            state = learner.init(problem.init_params(jax.random.PRNGKey(0)))
            key = jax.random.PRNGKey(1)
            run = chunk_runner(learner, problem, cfg.meta_batch, key)
            its = jnp.arange(args.iters, dtype=jnp.int32)
            chunk = _time(lambda: run(state, its), args.repeats) / args.iters
            row = {"algorithm": algorithm, "preset": preset, "unroll": unroll,
                   "meta_batch": cfg.meta_batch, "us_per_iter_scan_chunk": chunk * 1e6}
            if unroll == 1:
                step = jax.jit(lambda s, k: learner.step(s, task_batch(problem, k, cfg.meta_batch)))

                def loop(n=min(args.iters, 1000)):
                    s = state
                    for i in range(n):
                        s, _ = step(s, jax.random.fold_in(key, i))
                    return s

                n = min(args.iters, 1000)
                row["us_per_iter_step_loop"] = _time(loop, args.repeats) / n * 1e6
            rows.append(row)
            print(f"{algorithm:8s} {preset:13s} unroll={unroll}  scan chunk "
                  f"{row['us_per_iter_scan_chunk']:8.1f} us/iter"
                  + (f"   jitted step per call {row['us_per_iter_step_loop']:8.1f} us/iter"
                     if "us_per_iter_step_loop" in row else ""))
    out = {"device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}", "rows": rows}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

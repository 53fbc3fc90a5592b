"""A preset's training chunk with its parallel tasks N at a time (1: unbatched), for several N.

    python benchmarks/tasks_at_once.py --preset NAME --values 1,all [--iters N] [--rounds R] [--json]

Builds the preset's run as `fometa train --preset NAME --tasks-at-once N` does (random images
of the dataset's shapes, as compile_times.py and preset_speed.py), once for each value ("all":
the whole meta-batch at once, the vmap), compiles each training loop (timed), then times
chunks of `--iters` meta-iterations, the values alternated, `--rounds` times; prints one line
per value (median ms per meta-iteration) and, last, a JSON list.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax

from fometa.run import resolve, setup
from fometa.run.training import Chunks, initial_state
from fometa.sharding import task_mesh

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preset_speed import synthetic_problem  # noqa: E402  (random images of a dataset's shapes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--values", default="1,all", help="comma-separated: N or all")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="only the JSON list")
    args = parser.parse_args(argv)
    base = resolve(preset=args.preset)
    if base.task_order != "parallel":
        sys.exit(f"tasks_at_once.py: {args.preset} runs its tasks in sequence (--task-order "
                 f"{base.task_order}): nothing to group")
    problem = synthetic_problem(base, None)
    runs = {}
    for value in args.values.split(","):
        cfg = resolve(preset=args.preset,
                      tasks_at_once=base.meta_batch if value == "all" else int(value))
        run = setup(cfg, problem)
        state = initial_state(cfg, run)
        chunks = Chunks(cfg, run, run.train_key, task_mesh())
        chunks.prepare(state)
        jax.block_until_ready(chunks(state, 0, args.iters))  # warm-up
        runs[value] = (chunks, state)
    times = {value: [] for value in runs}
    for _ in range(args.rounds):
        for value, (chunks, state) in runs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(chunks(state, 0, args.iters))
            times[value].append((time.perf_counter() - t0) * 1e3 / args.iters)
    rows = [{"preset": args.preset, "tasks_at_once": value, "meta_batch": base.meta_batch,
             "ms_per_meta_iteration": statistics.median(times[value]),
             "each_ms": [round(t, 1) for t in times[value]],
             "compile_s": runs[value][0].compile_seconds, "iters": args.iters,
             "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"}
            for value in runs]
    if not args.json:
        for row in rows:
            print(f"{args.preset} tasks at once {row['tasks_at_once']:>4} of "
                  f"{row['meta_batch']}: {row['ms_per_meta_iteration']:8.1f} ms per "
                  f"meta-iteration (compile {row['compile_s']:.1f} s)", flush=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

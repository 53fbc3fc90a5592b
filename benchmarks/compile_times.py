"""Compile time of every preset's training loop and evaluation, as `fometa train` builds them.

    python benchmarks/compile_times.py [--preset NAME ...] [--images-per-class N] [--json]
                                       [--compile-cache DIR]

For each preset (default: all of them) builds the run as `fometa train --preset NAME` does
(settings, problem on random images of the dataset's shapes, learner, initial state) and
compiles, ahead of time and timed one after the other, the training loop (`results.json`'s
`compile_seconds`: one program serves chunks of every length) and the evaluation of the
preset's `--eval-tasks` (one program serves the periodic and final evaluations).
`--images-per-class 600` gives Mini-ImageNet and CIFAR-FS their full splits' shapes
(`preset_speed.SHAPES` has 60 of their 600; Omniglot keeps its 20). Prints one line per
preset, with the process's peak resident memory so far (run one preset per process to read
it as that preset's), and, last, a JSON list. `--compile-cache DIR` turns on the on-disk
cache of compiled programs as `fometa train --compile-cache DIR` does: run it twice, the
second process loads what the first compiled (`compile_cache.sh`).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import jax

from fometa.run import PRESETS, resolve, setup
from fometa.run.processes import compile_cache
from fometa.run.training import Chunks, evaluation, initial_state
from fometa.sharding import task_mesh

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preset_speed import synthetic_problem  # noqa: E402  (random images of a dataset's shapes)


def compile_times(preset: str, images_per_class: int | None = None) -> dict:
    """Seconds to compile `preset`'s training loop and its evaluation."""
    cfg = resolve(preset=preset)
    run = setup(cfg, synthetic_problem(cfg, images_per_class))
    state = initial_state(cfg, run)
    mesh = task_mesh()
    chunks = Chunks(cfg, run, run.train_key, mesh)
    chunks.prepare(state)
    evaluate = evaluation(cfg, run, mesh)
    t0 = time.perf_counter()
    evaluate.prepare(state, cfg.eval_tasks)
    return {"preset": preset, "algorithm": cfg.algorithm, "dataset": cfg.dataset,
            "train_compile_s": chunks.compile_seconds,
            "eval_compile_s": time.perf_counter() - t0,
            "images_per_class": images_per_class,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
            "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=list(PRESETS), metavar="NAME")
    parser.add_argument("--images-per-class", type=int, metavar="N",
                        help="images per class of the random splits (default: SHAPES')")
    parser.add_argument("--json", action="store_true", help="only the JSON list")
    parser.add_argument("--compile-cache", metavar="DIR",
                        help="keep compiled programs in DIR (default: no on-disk cache)")
    args = parser.parse_args(argv)
    cache = compile_cache(args.compile_cache) if args.compile_cache else None
    rows = []
    for preset in args.preset or PRESETS:
        row = dict(compile_times(preset, args.images_per_class), compile_cache=cache)
        rows.append(row)
        if not args.json:
            print(f"{preset:28s} training {row['train_compile_s']:5.1f} s  "
                  f"evaluation {row['eval_compile_s']:5.1f} s  "
                  f"peak memory {row['peak_rss_gb']:.1f} GB", flush=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

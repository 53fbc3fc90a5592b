"""Accuracy of bfloat16 mixed precision against float32 (not a test).

Trains the same runs with `dtype="float32"` and `dtype="bfloat16"` (same seed) through
`fometa.run.train` and prints each run's evaluation and the difference:
  - sine: Reptile on the paper's sine tasks (mean squared error after 32 steps);
  - omniglot: a short Reptile run on the real data, 5-way 1-shot (the paper's preset,
    shortened), if the data is found ($FOMETA_DATA_DIR or --data-dir), else skipped.

bfloat16 computes the network in bfloat16 (params and inputs cast inside the loss);
params, optimizer states and updates stay float32. On CPU it is not faster (XLA:CPU
has no fast bfloat16 matmuls; times are printed anyway): the option is meant for GPUs.

    python benchmarks/dtype.py
    FOMETA_DATA_DIR=/work/shared/data python benchmarks/dtype.py --omniglot-iters 300
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import jax

from fometa.run import resolve, train


def run(name: str, runs_dir: Path, **settings) -> dict[str, dict]:
    out = {}
    for dtype in ("float32", "bfloat16"):
        cfg = resolve(dtype=dtype, **settings)
        r = train(cfg, runs_dir / f"{name}-{dtype}", progress=False)
        out[dtype] = {"metric": r["eval"]["metric"], "mean": r["eval"]["mean"],
                      "ci95": r["eval"]["ci95"], "train_seconds": round(r["train_seconds"], 1)}
        if "eval_transductive" in r:
            out[dtype]["transductive"] = r["eval_transductive"]["mean"]
        e = out[dtype]
        print(f"{name:9s} {dtype:9s} {e['metric']} {e['mean']:.4f} +/- {e['ci95']:.4f}"
              f"  (train {e['train_seconds']} s)", flush=True)
    diff = out["bfloat16"]["mean"] - out["float32"]["mean"]
    out["bfloat16_minus_float32"] = diff
    print(f"{name:9s} bfloat16 - float32: {diff:+.4f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sine-iters", type=int, default=30000)
    parser.add_argument("--sine-eval-tasks", type=int, default=1000)
    parser.add_argument("--omniglot-iters", type=int, default=300)
    parser.add_argument("--omniglot-eval-tasks", type=int, default=200)
    parser.add_argument("--data-dir", default=os.environ.get("FOMETA_DATA_DIR"))
    parser.add_argument("--skip-omniglot", action="store_true")
    args = parser.parse_args()

    print(f"backend {jax.default_backend()}, jax {jax.__version__}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp)
        results["sine"] = run("sine", runs_dir, dataset="sine", meta_iters=args.sine_iters,
                              eval_tasks=args.sine_eval_tasks,
                              log_every=args.sine_iters)
        if args.skip_omniglot or not args.data_dir:
            print("omniglot skipped (no --data-dir or $FOMETA_DATA_DIR)", flush=True)
        else:
            results["omniglot"] = run(
                "omniglot", runs_dir, preset="reptile-omniglot-5w1s",
                data_dir=args.data_dir, meta_iters=args.omniglot_iters,
                eval_tasks=args.omniglot_eval_tasks, log_every=args.omniglot_iters)
    print(json.dumps(results))


if __name__ == "__main__":
    main()

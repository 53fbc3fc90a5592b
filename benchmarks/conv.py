"""Meta-step time of the paper's conv nets with conv="patch" vs conv="xla" (not a test).

One meta-step: a jitted `fometa.meta_learner(...).step` on a batch of tasks, vmapped over
tasks, each a `lax.scan` of inner SGD steps on 5-way batches, plus the Reptile difference,
the FOMAML query gradient or the MAML second-order gradient. Prints ms per meta-step
(median over runs, after warm-up, runs alternating between the implementations) for each
conv implementation, the ratio xla/patch, and a final JSON line.

    python benchmarks/conv.py                          # Omniglot, reptile/fomaml/maml
    python benchmarks/conv.py --model miniimagenet --algorithms fomaml --runs 3

XLA:CPU logs the convolutions it runs through its slow generic loop at VLOG 2:

    TF_CPP_MIN_LOG_LEVEL=0 TF_CPP_VMODULE=thunk_emitter=2 python benchmarks/conv.py \\
        --runs 1 2>&1 | grep "Falling back to unoptimized convolution"
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import time
from typing import Any, Callable

import jax
import optax

import fometa
from fometa.convnets import MiniImageNetCNN, OmniglotCNN

MODELS = {"omniglot": (OmniglotCNN, (28, 28, 1)), "miniimagenet": (MiniImageNetCNN, (84, 84, 3))}


def make_tasks(key: jax.Array, image_shape: tuple[int, ...], tasks: int, steps: int,
               batch: int, ways: int) -> fometa.Task:
    """Random tasks: support {"x": [tasks, steps, batch, *image], "y": [tasks, steps, batch]}."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    support = {"x": jax.random.normal(k1, (tasks, steps, batch, *image_shape)),
               "y": jax.random.randint(k2, (tasks, steps, batch), 0, ways)}
    query = {"x": jax.random.normal(k3, (tasks, batch, *image_shape)),
             "y": jax.random.randint(k4, (tasks, batch), 0, ways)}
    return fometa.Task(support, query)


def time_round_robin(calls: dict[str, Callable[[], Any]], runs: int) -> dict[str, float]:
    """Median wall time in ms of each call, after a warm-up call each.

    Runs alternate between the calls, so load from other processes hits them alike.
    """
    for call in calls.values():
        jax.block_until_ready(call())
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def count_convolutions(hlo: str) -> tuple[int, int]:
    """(convolutions, grouped convolutions) in optimized HLO text."""
    convs = [line for line in hlo.splitlines() if " convolution(" in line]
    grouped = [line for line in convs if re.search(r"(feature|batch)_group_count=\d", line)]
    return len(convs), len(grouped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="omniglot")
    parser.add_argument("--algorithms", nargs="+", default=["reptile", "fomaml", "maml"],
                        choices=fometa.ALGORITHMS)
    parser.add_argument("--convs", nargs="+", default=["patch", "xla"], choices=["patch", "xla"])
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="inner SGD steps")
    parser.add_argument("--batch", type=int, default=10, help="images per inner step")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--unroll", type=int, default=1, help="lax.scan unroll of the inner loop")
    args = parser.parse_args()

    model_cls, image_shape = MODELS[args.model]
    tasks = make_tasks(jax.random.PRNGKey(0), image_shape, args.tasks, args.steps, args.batch,
                       args.ways)
    params = model_cls(args.ways).init(jax.random.PRNGKey(1), tasks.query["x"][0])
    print(f"backend {jax.default_backend()}, jax {jax.__version__}, {args.model}, "
          f"{args.tasks} tasks x {args.steps} inner steps x {args.batch} images, "
          f"unroll {args.unroll}, median of {args.runs} runs")

    results: dict[str, dict[str, float]] = {}
    for algorithm in args.algorithms:
        calls = {}
        for conv in args.convs:
            model = model_cls(args.ways, conv=conv)

            def loss_fn(p, batch, model=model):
                logits = model.apply(p, batch["x"])
                return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

            learner = fometa.meta_learner(algorithm, loss_fn, 0.1, unroll=args.unroll)
            state = learner.init(params)
            t0 = time.perf_counter()
            step = jax.jit(learner.step).lower(state, tasks).compile()
            convs, grouped = count_convolutions(step.as_text())
            print(f"{algorithm:8s} conv={conv:5s} compiled in {time.perf_counter() - t0:5.1f} s; "
                  f"HLO convolutions {convs} ({grouped} grouped)", flush=True)
            calls[conv] = functools.partial(step, state, tasks)
        results[algorithm] = {conv: round(ms, 2)
                              for conv, ms in time_round_robin(calls, args.runs).items()}
        for conv, ms in results[algorithm].items():
            print(f"{algorithm:8s} conv={conv:5s} {ms:9.2f} ms/meta-step", flush=True)
        if {"patch", "xla"} <= results[algorithm].keys():
            ratio = results[algorithm]["xla"] / results[algorithm]["patch"]
            results[algorithm]["xla/patch"] = round(ratio, 2)
            print(f"{algorithm:8s} xla/patch {ratio:.2f}x", flush=True)

    print(json.dumps({"benchmark": "conv", "backend": jax.default_backend(),
                      "model": args.model, "tasks": args.tasks, "steps": args.steps,
                      "batch": args.batch, "unroll": args.unroll, "ms_per_meta_step": results}))


if __name__ == "__main__":
    main()

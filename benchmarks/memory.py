"""Peak memory of one MAML meta-step against the number of inner steps, with and without
rematerialisation (not a test).

The Omniglot workload: `fometa.meta_learner("maml", ...).step` on 5 tasks, each a
`lax.scan` of inner SGD steps on 5-way batches of 10 random 28x28 images through
`fometa.OmniglotCNN`, vmapped over tasks. Memory is what XLA plans for the compiled
executable (`compiled.memory_analysis()`): temp bytes (the buffers the step allocates,
the activations that the second-order backward pass keeps included) plus argument bytes
(state and task batch); nothing is run, except with --time.

Variants: "none" (no remat), "remat" (`remat=True`: each inner step under `jax.checkpoint`
with the default policy, nothing saved, so each inner step keeps only its params and
batch), and "remat-dots" (the loss under `jax.checkpoint` with `dots_saveable`, which keeps
the matmul outputs; here for comparison only). `dots_with_no_batch_dims_saveable` would
save nothing under the vmap over tasks (every dot has the task batch dimension), i.e. the
same as "remat".

    python benchmarks/memory.py
    python benchmarks/memory.py --steps 5 10 --variants none remat --time
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import fometa
from fometa.convnets import OmniglotCNN

MB = 1e6


def make_tasks(key: jax.Array, tasks: int, steps: int, batch: int, ways: int) -> fometa.Task:
    k1, k2, k3, k4 = jax.random.split(key, 4)
    support = {"x": jax.random.normal(k1, (tasks, steps, batch, 28, 28, 1)),
               "y": jax.random.randint(k2, (tasks, steps, batch), 0, ways)}
    query = {"x": jax.random.normal(k3, (tasks, batch, 28, 28, 1)),
             "y": jax.random.randint(k4, (tasks, batch), 0, ways)}
    return fometa.Task(support, query)


def learner_for(variant: str, loss_fn, inner_lr: float) -> fometa.MetaLearner:
    if variant == "none":
        return fometa.meta_learner("maml", loss_fn, inner_lr)
    if variant == "remat":
        return fometa.meta_learner("maml", loss_fn, inner_lr, remat=True)
    if variant == "remat-dots":
        dots = jax.checkpoint(loss_fn, prevent_cse=False,
                              policy=jax.checkpoint_policies.dots_saveable)
        return fometa.meta_learner("maml", dots, inner_lr)
    raise ValueError(variant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    parser.add_argument("--variants", nargs="+", default=["none", "remat"],
                        choices=["none", "remat", "remat-dots"])
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--time", action="store_true",
                        help="also run each step and report ms per meta-step (median of 3)")
    args = parser.parse_args()

    model = OmniglotCNN(args.ways)

    def loss_fn(p, b):
        logits = model.apply(p, b["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, b["y"]).mean()

    params = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 28, 28, 1)))
    print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), jax "
          f"{jax.__version__}; MAML meta-step, {args.tasks} tasks x {args.ways}-way x "
          f"{args.batch} images 28x28, OmniglotCNN (conv {fometa.convnets.resolve_conv('auto')})",
          flush=True)
    header = f"{'steps':>5} {'variant':>10} {'temp MB':>9} {'args MB':>8} {'total MB':>9}"
    header += f" {'ms/step':>8}" if args.time else ""
    print(header, flush=True)
    results = []
    for steps in args.steps:
        tasks = make_tasks(jax.random.PRNGKey(0), args.tasks, steps, args.batch, args.ways)
        for variant in args.variants:
            learner = learner_for(variant, loss_fn, 0.1)
            state = learner.init(params)
            compiled = jax.jit(learner.step).lower(state, tasks).compile()
            mem = compiled.memory_analysis()
            row = {"steps": steps, "variant": variant,
                   "temp_mb": round(mem.temp_size_in_bytes / MB, 1),
                   "argument_mb": round(mem.argument_size_in_bytes / MB, 1),
                   "total_mb": round((mem.temp_size_in_bytes + mem.argument_size_in_bytes) / MB, 1)}
            line = (f"{steps:5d} {variant:>10} {row['temp_mb']:9.1f} {row['argument_mb']:8.1f} "
                    f"{row['total_mb']:9.1f}")
            if args.time:
                jax.block_until_ready(compiled(state, tasks))
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    jax.block_until_ready(compiled(state, tasks))
                    times.append((time.perf_counter() - t0) * 1e3)
                row["ms"] = round(statistics.median(times), 1)
                line += f" {row['ms']:8.1f}"
            print(line, flush=True)
            results.append(row)
    print(json.dumps({"backend": jax.default_backend(), "jax": jax.__version__,
                      "tasks": args.tasks, "ways": args.ways, "batch": args.batch,
                      "results": results}))


if __name__ == "__main__":
    main()

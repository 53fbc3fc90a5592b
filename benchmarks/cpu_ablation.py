"""Where the CPU time of the speed workload went: each optimisation turned off in turn.

    python benchmarks/cpu_ablation.py --algorithm fomaml|reptile|maml [--iters 20] [--json]

The workload and the timing are those of `benchmarks/speed.py` (5 Omniglot tasks, 5 inner
SGD steps on 10 images, one jitted meta-step per call). Variants, cumulative from the top,
all built in one process and timed in alternation (median ms per meta-step):

  before        fometa's step with the four changes below undone: `jnp.mean` over the
                task axis, the conv bias added before batch norm, textbook batch norm
                `(x - mean) * rsqrt(var + eps) * scale + bias`, and a plain `@` in the
                patch convolution
  +task-mean    the task mean of the meta-gradients as a dot with 1/T weights
  +no-bias      the conv biases (cancelled by batch norm) left out of the output
  +bn-fold      batch norm as one multiply-add with per-channel factors
  +matmul       `fometa.matmul` forms in the patch convolution (= fometa now)
  +remat        `meta_learner(remat=True)` (MAML only: nothing to recompute otherwise)

The undone versions are monkeypatched into `fometa.convnets` / `fometa.learner` here;
they compute the same values (tests/test_convnets.py, tests/test_matmul.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

import fometa.convnets as convnets
import fometa.learner as learner_mod

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from speed import fometa_step, make_data  # noqa: E402

NOW = {"conv": convnets.Conv, "bn": convnets.BatchNorm, "matmul": convnets.matmul,
       "mean": learner_mod._mean_over_tasks}


def _mean_over_tasks_before(tree):
    return jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0).astype(x.dtype), tree)


def _conv_with_bias(*args, **kwargs):
    """`Conv` with its bias added whatever the network asks for."""
    return NOW["conv"](*args, **{**kwargs, "add_bias": True})


class _TextbookBatchNorm(nn.Module):
    epsilon: float = convnets.BN_EPSILON

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        axes = tuple(range(x.ndim - 1))
        mean = x.mean(axes)
        var = jnp.square(x - mean).mean(axes)
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


VARIANTS = ("before", "+task-mean", "+no-bias", "+bn-fold", "+matmul", "+remat")


def build(variant: str, algorithm: str, data):
    """A jitted meta-step call with the optimisations up to `variant` on."""
    level = VARIANTS.index(variant)
    learner_mod._mean_over_tasks = NOW["mean"] if level >= 1 else _mean_over_tasks_before
    convnets.Conv = NOW["conv"] if level >= 2 else _conv_with_bias
    convnets.BatchNorm = NOW["bn"] if level >= 3 else _TextbookBatchNorm
    convnets.matmul = NOW["matmul"] if level >= 4 else jnp.matmul
    call, _, _ = fometa_step("omniglot-5w1s", algorithm, data, unroll=1, conv="auto",
                             remat=level >= 5)  # traced and compiled with the patches
    return call


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", choices=("maml", "fomaml", "reptile"), default="fomaml")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    data = make_data("omniglot-5w1s")
    variants = VARIANTS if args.algorithm == "maml" else VARIANTS[:-1]
    calls = {v: build(v, args.algorithm, data) for v in variants}
    for _ in range(3):
        for call in calls.values():
            call()
    times = {v: [] for v in variants}
    for _ in range(args.iters):
        for v, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[v].append((time.perf_counter() - t0) * 1e3)
    ms = {v: statistics.median(t) for v, t in times.items()}
    for v in variants:
        print(f"{args.algorithm:8s} {v:12s} {ms[v]:8.2f} ms  ({ms['before'] / ms[v]:.2f}x before)",
              file=sys.stderr if args.json else sys.stdout)
    out = {"algorithm": args.algorithm, "workload": "omniglot-5w1s", "ms_per_meta_step": ms,
           "iters": args.iters, "jax": jax.__version__}
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

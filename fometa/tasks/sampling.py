"""Index sampling shared by the task distributions, all on the device with `jax.random`."""

from __future__ import annotations

import jax
import jax.numpy as jnp


# Up to this many values, `distinct` takes Floyd's k steps; beyond, a permutation of range(n).
FLOYD_MAX = 32


def distinct(key: jax.Array, n: int, k: int) -> jax.Array:
    """`k` distinct integers of `range(n)` in uniformly random order, int32 [k]: the law of
    `jax.random.choice(key, n, (k,), replace=False)`, without its sort of all `n` keys
    (up to k = FLOYD_MAX; beyond, it is that sort).

    Floyd's algorithm draws a uniform k-subset in k steps (step i takes a uniform t in
    [0, n - k + i], or n - k + i itself if t was taken already); a shuffle of the k then
    makes every order equally likely. For 5 of Omniglot's 4,800 classes the sort was 12%
    of a Reptile meta-iteration's op time on the CPU (benchmarks/README.md, "Task sampling").
    """
    if not 0 <= k <= n:
        raise ValueError(f"{k} distinct values asked of range({n})")
    if k > FLOYD_MAX:  # k steps unrolled would grow the program: sort n keys instead
        return jax.random.permutation(key, n)[:k].astype(jnp.int32)
    kr, kp = jax.random.split(key)
    draws = jax.random.randint(kr, (k,), 0, jnp.arange(n - k + 1, n + 1, dtype=jnp.int32),
                               dtype=jnp.int32)
    picked = jnp.zeros((k,), jnp.int32)
    for i in range(k):  # k is small (ways, shots): a few scalar ops per step
        taken = jnp.any(picked[:i] == draws[i])
        picked = picked.at[i].set(jnp.where(taken, n - k + i, draws[i]))
    return jax.random.permutation(kp, picked)


def epoch_batches(key: jax.Array, num_examples: int, batch_size: int,
                  num_batches: int) -> jax.Array:
    """Indices of `num_batches` minibatches, int32 [num_batches, batch_size].

    Cycles through shuffled epochs of `range(num_examples)`, a batch may straddle two
    epochs: the paper's code (`_mini_batches` without replacement) does the same.
    """
    total = num_batches * batch_size
    epochs = -(-total // num_examples)
    perms = jax.vmap(lambda k: jax.random.permutation(k, num_examples))(
        jax.random.split(key, epochs))
    return perms.reshape(-1)[:total].reshape(num_batches, batch_size).astype(jnp.int32)


def independent_batches(key: jax.Array, num_examples: int, batch_size: int,
                        num_batches: int) -> jax.Array:
    """Indices of `num_batches` minibatches drawn independently, int32 [num_batches,
    batch_size]: each is `batch_size` distinct examples, and an example may appear in any
    number of batches ("with replacement" across batches: the paper's code's
    `--replacement`, `random.sample(samples, batch_size)` per batch)."""
    return jax.vmap(lambda k: distinct(k, num_examples, batch_size))(
        jax.random.split(key, num_batches))

"""Index sampling shared by the task distributions, all on the device with `jax.random`."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
    return jax.vmap(lambda k: jax.random.permutation(k, num_examples)[:batch_size])(
        jax.random.split(key, num_batches)).astype(jnp.int32)

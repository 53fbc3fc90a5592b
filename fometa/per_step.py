"""Parameters with one value per inner step: MAML++'s per-step batch-norm weights and biases
(Antoniou et al. 2019, Sec. 4 "BNWB").

The meta-parameters become `PerStep(params, later)`: `params` holds each chosen leaf's value
for inner step 0, `later` its values for steps 1..K-1. The inner optimizer (`advance`) sets
each chosen leaf to the next step's value after every step, so the loss at inner step k,
and the query loss after the last step, see step k's (and step K-1's) value, with no change
to the model or the loss: differentiating through the inner loop (MAML) gives each step's
value its own meta-gradient. The inner loop does not otherwise adapt the chosen leaves (as
MAML++, whose inner loop leaves batch norm's parameters alone). Beyond step K-1 (an
evaluation with more inner steps) the last value stays.

MAML++'s code also keeps per-step running statistics, which its forward pass (always in
training mode) never uses; fometa's batch norm always uses the batch's statistics
(`fometa.convnets`), so there are none to keep.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fometa.partition import Mask, resolve

Params = Any


class PerStep(NamedTuple):
    """Meta-parameters with per-step values of some leaves.

    params: the meta-parameters, the chosen leaves at their step-0 values.
    later: one array [K-1, *leaf.shape] per chosen leaf (in the leaves' order): its values
        for inner steps 1..K-1.
    """

    params: Params
    later: tuple


def _mask(select: Mask, params: Params) -> list[bool]:
    return [bool(m) for m in jax.tree_util.tree_leaves(resolve(select, params))]


def per_step(params: Params, select: Mask, steps: int) -> PerStep:
    """`params` with the leaves that `select` picks given `steps` values (all equal to the
    leaf: every step starts where the shared parameter would)."""
    if steps < 1:
        raise ValueError(f"per-step parameters need at least 1 inner step, got {steps}")
    leaves = jax.tree_util.tree_leaves(params)
    chosen = [leaf for leaf, m in zip(leaves, _mask(select, params)) if m]
    if not chosen:
        raise ValueError("the per-step mask selects no parameter")
    return PerStep(params, tuple(jnp.repeat(leaf[None], steps - 1, axis=0) for leaf in chosen))


class StepCount(NamedTuple):
    count: jax.Array  # inner steps taken, int32 scalar
    inner: optax.OptState


def advance(opt: optax.GradientTransformation, select: Mask) -> optax.GradientTransformation:
    """The inner optimizer over `PerStep` meta-parameters: `opt` on `params` but the leaves
    that `select` picks (a mask of `params`); after step k (from 0) those leaves move to
    their step-(k+1) value in `later` (none after the last); `later` itself never changes."""

    def init(meta: PerStep) -> StepCount:
        return StepCount(jnp.zeros((), jnp.int32), opt.init(meta.params))

    def update(grads: PerStep, state: StepCount, meta: PerStep | None = None):
        if meta is None:
            raise ValueError("advance reads the per-step values from the params: pass them")
        updates, inner = opt.update(grads.params, state.inner, meta.params)
        flat, tree = jax.tree_util.tree_flatten(updates)
        current = jax.tree_util.tree_leaves(meta.params)
        later = iter(meta.later)
        for i, chosen in enumerate(_mask(select, meta.params)):
            if chosen:
                rows = next(later)
                if rows.shape[0] == 0:  # one step: nothing to move to
                    flat[i] = jnp.zeros_like(current[i])
                    continue
                nxt = rows[jnp.minimum(state.count, rows.shape[0] - 1)]
                flat[i] = jnp.where(state.count < rows.shape[0], nxt - current[i],
                                    jnp.zeros_like(current[i]))
        zero_later = tuple(jnp.zeros_like(r) for r in meta.later)
        return (PerStep(jax.tree_util.tree_unflatten(tree, flat), zero_later),
                StepCount(state.count + 1, inner))

    return optax.GradientTransformation(init, update)


def model_params(meta: PerStep | Params) -> Params:
    """The meta-parameters without the later steps' values (step 0's)."""
    return meta.params if isinstance(meta, PerStep) else meta


def on_params(loss_fn: Callable[[Params, Any], jax.Array]
              ) -> Callable[[PerStep, Any], jax.Array]:
    """`loss_fn` of the parameters, as a function of `PerStep` (the current step's values
    are in `params`)."""
    return lambda meta, batch: loss_fn(meta.params, batch)


def extend(mask: Mask, select: Mask) -> Callable[[PerStep], PerStep]:
    """A mask of `PerStep` from a mask of its params: each chosen leaf's later values (the
    leaves that `select` picks) as the leaf."""
    def of(meta: PerStep) -> PerStep:
        m = resolve(mask, meta.params)
        flags = jax.tree_util.tree_leaves(m)
        chosen = tuple(f for f, c in zip(flags, _mask(select, meta.params)) if c)
        return PerStep(m, chosen)

    return of

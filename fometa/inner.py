"""The inner loop: task adaptation as a `jax.lax.scan` over inner steps."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

Params = Any
Batch = Any
LossFn = Callable[[Params, Batch], jax.Array]
InnerOpt = Union[optax.GradientTransformation, float]


def as_optimizer(inner_opt: InnerOpt) -> optax.GradientTransformation:
    """An optax transformation for `inner_opt`: itself, or plain SGD if it is a learning rate
    (a number or a 0-d array; one known before tracing must be finite and > 0)."""
    if isinstance(inner_opt, optax.GradientTransformation):
        return inner_opt
    if isinstance(inner_opt, bool):
        raise TypeError("inner_opt must be an optax.GradientTransformation or a float "
                        f"learning rate, got {inner_opt!r}")
    if isinstance(inner_opt, numbers.Real) or (
            isinstance(inner_opt, (jax.Array, np.ndarray)) and np.ndim(inner_opt) == 0
            and jnp.issubdtype(inner_opt.dtype, jnp.number)):
        check_positive(inner_opt, "the inner learning rate")
        # A Fraction or NumPy scalar as a Python float: optax multiplies it with traced arrays.
        return optax.sgd(float(inner_opt) if isinstance(inner_opt, numbers.Real) else inner_opt)
    raise TypeError("inner_opt must be an optax.GradientTransformation or a float "
                    f"learning rate, got {type(inner_opt).__name__}")


def check_positive(value: Any, what: str, zero_ok: bool = False) -> None:
    """A ValueError naming `what` unless `value` (a number or a 0-d array) is finite and > 0
    (>= 0 with `zero_ok`); a traced value (a hyperparameter swept under `jit`/`vmap`) is not
    known, and not checked."""
    if isinstance(value, jax.core.Tracer):
        return
    try:
        known = float(value) if np.ndim(value) == 0 else math.nan
    except (TypeError, ValueError):
        known = math.nan
    if not (math.isfinite(known) and (known >= 0 if zero_ok else known > 0)):
        raise ValueError(f"{what} must be a finite number {'>= 0' if zero_ok else '> 0'}, "
                         f"got {value!r}")


def whole(value: Any, least: int) -> bool:
    """Whether `value` is an integer (not a bool) of at least `least`."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least


def all_finite(tree: Any) -> jax.Array:
    """bool []: whether every float in `tree` is finite (integer leaves are skipped).

    One check over all leaves raveled into one vector, in their widest float type (so no
    finite value overflows): per-leaf checks were 51-270 more small fusions in a training
    loop, each compiled by XLA on its own (benchmarks/README.md, "Compile time per
    preset")."""
    floats = [jnp.ravel(x) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not floats:
        return jnp.array(True)
    wide = jnp.result_type(*floats)
    return jnp.all(jnp.isfinite(jnp.concatenate([x.astype(wide) for x in floats])))


def leading_size(tree: Any, what: str, hint: str = "") -> int:
    """The common size of the leading axis of `tree`'s leaves; a ValueError naming `what`
    (the axis) and the shapes when the leaves have none or different ones."""
    leaves = jax.tree_util.tree_leaves(tree)
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if not leaves or None in sizes or len(sizes) != 1:
        shapes = jax.tree_util.tree_map(jnp.shape, tree)
        raise ValueError(f"every leaf needs the same leading axis of {what}; got {shapes}{hint}")
    return sizes.pop()


def num_steps(support: Batch) -> int:
    """The number of inner steps in `support`: the common leading axis of its leaves."""
    return leading_size(support, "inner steps", " (support)")


def check_loss(loss_fn: LossFn, params: Params, batch: Batch) -> jax.ShapeDtypeStruct:
    """A ValueError (at trace time) unless `params` are floating-point arrays, `batch` (one
    inner step's) has examples and `loss_fn(params, batch)` is a float scalar; returns its
    shape and dtype."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            raise ValueError(f"params{jax.tree_util.keystr(path)} is {jnp.result_type(leaf)}: "
                             "parameters must be floating-point arrays (the gradient is taken "
                             "with respect to all of them)")
    check_examples(batch, "support")
    out = jax.eval_shape(loss_fn, params, batch)
    if isinstance(out, tuple):
        raise ValueError("loss_fn must return a scalar; it returned a tuple (loss, aux?): pass "
                         "lambda p, b: loss_fn(p, b)[0]")
    if getattr(out, "shape", None) != ():
        raise ValueError(f"loss_fn must return a scalar; it returned shape "
                         f"{getattr(out, 'shape', type(out).__name__)} (reduce it, e.g. its mean)")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"loss_fn must return a float; it returned {out.dtype} (a count or a "
                         "comparison has no gradient)")
    return out


def check_examples(batch: Batch, what: str) -> None:
    """A ValueError unless every leaf of `batch` (one batch: examples on the leading axis)
    that has an axis has at least one example: on none, a mean loss is NaN and its gradient
    zero, so nothing would adapt or learn, silently."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(batch):
        if jnp.ndim(leaf) and jnp.shape(leaf)[0] == 0:
            raise ValueError(f"{what}{jax.tree_util.keystr(path)} has shape {jnp.shape(leaf)}: "
                             "a batch with no examples")


def check_support_and_query(support: Batch, query: Batch) -> None:
    """A ValueError if `support` lacks the leading axis of inner steps that `query` does not
    have (leaves of the same tree path: support ndim = query ndim + 1), or if `query` has no
    examples."""
    check_examples(query, "query")
    s_leaves = jax.tree_util.tree_leaves_with_path(support)
    q_leaves = dict(jax.tree_util.tree_leaves_with_path(query))
    for path, leaf in s_leaves:
        if path in q_leaves and jnp.ndim(leaf) != jnp.ndim(q_leaves[path]) + 1:
            raise ValueError(
                f"support{jax.tree_util.keystr(path)} has shape {jnp.shape(leaf)} and the "
                f"query's {jnp.shape(q_leaves[path])}: the support needs a leading axis of "
                "inner steps (k steps on one batch: jax.tree_util.tree_map(lambda a: "
                "jnp.stack([a] * k), batch))")


def inner_loop(loss_fn: LossFn, params: Params, support: Batch,
               opt: optax.GradientTransformation, opt_state: optax.OptState,
               unroll: int | bool = 1, remat: bool = False
               ) -> tuple[Params, optax.OptState, jax.Array]:
    """Runs one optimizer step per leading index of `support`.

    Returns the adapted params, the final optimizer state and the loss before each step,
    shape [steps]. Differentiable end to end (MAML backpropagates through it).

    `remat`: each inner step (its gradient and optimizer update) under `jax.checkpoint`, so
    that differentiating through the loop (MAML) saves only each step's params, optimizer
    state and batch, and recomputes the step's forward and backward passes from them,
    instead of keeping every step's activations: memory no longer grows with the
    activations of every step, and on XLA:CPU it is also faster (benchmarks/README.md).
    `prevent_cse=False`: the scan's loop boundary already keeps XLA from merging the
    recomputation with the forward pass.
    """
    if num_steps(support):
        check_loss(loss_fn, params, jax.tree_util.tree_map(lambda a: a[0], support))
    step = _stepper(loss_fn, opt)
    if remat:
        step = jax.checkpoint(step, prevent_cse=False)
    (adapted, final_state), losses = jax.lax.scan(step, (params, opt_state), support,
                                                  unroll=unroll)
    return adapted, final_state, losses


def _stepper(loss_fn: LossFn, opt: optax.GradientTransformation,
             each: Callable[[Params], Any] | None = None):
    """The scan body of an inner loop: one optimizer step; its output is the loss before
    the step, and with `each`, also `each(params after the step)`."""
    def step(carry, batch):
        p, s = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, batch)
        updates, s = opt.update(grads, s, p)
        p = optax.apply_updates(p, updates)
        return (p, s), (loss if each is None else (loss, each(p)))

    return step


def inner_path(loss_fn: LossFn, params: Params, support: Batch,
               opt: optax.GradientTransformation, opt_state: optax.OptState,
               each: Callable[[Params], Any], unroll: int | bool = 1, remat: bool = False,
               at: Sequence[int] | None = None
               ) -> tuple[Params, optax.OptState, jax.Array, Any]:
    """`inner_loop` that also returns `each(params)` after every step, stacked [steps, ...]
    (e.g. a metric along the adaptation, computed in the same loop); with `at` (increasing
    step counts in 0..steps, 0 for the params before any step), only after those steps,
    stacked [len(at), ...]. With `at`, one loop body holds the one copy of the step and of
    `each` that XLA compiles: iteration j (0..steps) records `each(params after j steps)`
    under a `lax.cond` on j and then takes step j + 1 under another (none at j = steps);
    both stay branches under `vmap` (j is not batched)."""
    steps = num_steps(support)
    if at is not None:
        at = tuple(at)
        if not (at and all(isinstance(k, numbers.Integral) for k in at)
                and list(at) == sorted(set(at)) and at[0] >= 0 and at[-1] <= steps):
            raise ValueError(f"at {at} must be increasing whole step counts from 0 to the "
                             f"support's {steps} inner steps")
        at = None if at == tuple(range(1, steps + 1)) else at
    step = _stepper(loss_fn, opt, each if at is None else None)
    if remat:
        step = jax.checkpoint(step, prevent_cse=False)
    if at is None:
        (adapted, final_state), (losses, path) = jax.lax.scan(
            step, (params, opt_state), support, unroll=unroll)
        return adapted, final_state, losses, path
    one_batch = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[1:], jnp.result_type(a)), support)
    no_loss = jnp.zeros((), check_loss(loss_fn, params, one_batch).dtype)
    if not steps:  # at == (0,)
        path = jax.tree_util.tree_map(lambda v: v[None], each(params))
        return params, opt_state, jnp.zeros((0,), no_loss.dtype), path
    slots = np.full(steps + 1, -1, np.int32)  # where count j's record goes; -1: not recorded
    slots[np.asarray(at)] = np.arange(len(at))
    path = jax.tree_util.tree_map(lambda s: jnp.zeros((len(at),) + s.shape, s.dtype),
                                  jax.eval_shape(each, params))

    def record(carry, xs):
        (p, s, path), (j, slot) = carry, xs
        path = jax.lax.cond(
            slot >= 0,
            lambda: jax.tree_util.tree_map(lambda a, v: a.at[slot].set(v), path, each(p)),
            lambda: path)
        batch = jax.tree_util.tree_map(
            lambda a: jax.lax.dynamic_index_in_dim(a, jnp.minimum(j, steps - 1), 0, False),
            support)
        (p, s), loss = jax.lax.cond(j < steps, lambda c: step(c, batch),
                                    lambda c: (c, no_loss), (p, s))
        return (p, s, path), loss

    (adapted, final_state, path), losses = jax.lax.scan(
        record, (params, opt_state, path),
        (jnp.arange(steps + 1, dtype=jnp.int32), jnp.asarray(slots)), unroll=unroll)
    return adapted, final_state, losses[:steps], path


def start_state(opt: optax.GradientTransformation, params: Params,
                inner_state: optax.OptState | None) -> optax.OptState:
    """`inner_state`, or `opt.init(params)` if None; a ValueError naming the difference if
    `inner_state` is not a state of `opt` for `params` (another optimizer's, other params')."""
    fresh = opt.init(params)
    if inner_state is None:
        return fresh
    expected = jax.tree_util.tree_structure(fresh)
    given = jax.tree_util.tree_structure(inner_state)
    shapes = lambda t: [jnp.shape(x) for x in jax.tree_util.tree_leaves(t)]
    if given != expected or shapes(inner_state) != shapes(fresh):
        raise ValueError("inner_state is not a state of inner_opt for these params: expected "
                         f"the structure of inner_opt.init(params), {expected}, got {given}")
    return inner_state


def adapt(loss_fn: LossFn, params: Params, support: Batch, inner_opt: InnerOpt, *,
          inner_state: optax.OptState | None = None, return_state: bool = False,
          unroll: int | bool = 1, remat: bool = False):
    """Adapts `params` to a task: one step of `inner_opt` on `loss_fn(params, support[i])` per i.

    Args:
      loss_fn: `loss_fn(params, batch) -> scalar`.
      params: the initial (meta-learned) parameters, any pytree.
      support: a pytree batch whose leaves carry a leading axis of inner steps.
      inner_opt: an optax `GradientTransformation`, or a float (the SGD learning rate).
      inner_state: the optimizer state to start from; `inner_opt.init(params)` if None.
      return_state: also return the final optimizer state.
      unroll: passed to `jax.lax.scan`.
      remat: rematerialise the inner steps when differentiating through them (memory).

    Returns:
      The adapted params, or `(adapted, final_state)` if `return_state`.
    """
    opt = as_optimizer(inner_opt)
    state = start_state(opt, params, inner_state)
    adapted, final_state, _ = inner_loop(loss_fn, params, support, opt, state, unroll, remat)
    return (adapted, final_state) if return_state else adapted

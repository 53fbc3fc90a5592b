"""MAML, first-order MAML and Reptile meta-gradients for one task.

Nichol, Achiam and Schulman (2018), "On First-Order Meta-Learning Algorithms":
MAML differentiates the query loss through the whole inner loop; FOMAML takes the query
gradient at the adapted parameters, treating them as constants (Sec. 2); Reptile's update
direction is `phi - W` for the adapted parameters W (Algorithm 1: phi <- phi + eps (W - phi)).
"""

from __future__ import annotations

from typing import Literal

import jax
import optax

from fometa.inner import Batch, InnerOpt, LossFn, Params, as_optimizer, inner_loop

Algorithm = Literal["maml", "fomaml", "reptile"]
ALGORITHMS: tuple[str, ...] = ("reptile", "fomaml", "maml")


def meta_gradient(algorithm: Algorithm, loss_fn: LossFn, params: Params, support: Batch,
                  query: Batch | None, opt: optax.GradientTransformation,
                  opt_state: optax.OptState, unroll: int | bool = 1, remat: bool = False):
    """One task's meta-gradient (`unroll`, `remat`: as in `fometa.inner.inner_loop`).

    Returns `(grad, final_inner_state, metrics)` where `metrics` holds `support_loss`
    (the loss on the first support batch, before adaptation; absent with zero inner steps)
    and, when `query` is given, `query_loss` (the loss on `query` after adaptation).
    """
    def run_inner(p):
        return inner_loop(loss_fn, p, support, opt, opt_state, unroll, remat)

    if algorithm == "maml":
        if query is None:
            raise ValueError("maml needs a query batch")

        def query_loss(p):
            adapted, state, losses = run_inner(p)
            return loss_fn(adapted, query), (state, losses)

        (qloss, (state, losses)), grad = jax.value_and_grad(query_loss, has_aux=True)(params)
    elif algorithm == "fomaml":
        if query is None:
            raise ValueError("fomaml needs a query batch")
        adapted, state, losses = run_inner(params)
        qloss, grad = jax.value_and_grad(loss_fn)(jax.lax.stop_gradient(adapted), query)
    elif algorithm == "reptile":
        adapted, state, losses = run_inner(params)
        grad = jax.tree_util.tree_map(lambda p, w: p - w, params, adapted)
        qloss = None if query is None else loss_fn(adapted, query)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    # No support_loss with zero inner steps (there is no support batch to evaluate).
    metrics = {"support_loss": losses[0]} if losses.shape[0] else {}
    if qloss is not None:
        metrics["query_loss"] = qloss
    return grad, state, metrics


def _contract(algorithm, loss_fn, params, support, query, inner_opt, inner_state,
              return_state, unroll, remat):
    opt = as_optimizer(inner_opt)
    state = opt.init(params) if inner_state is None else inner_state
    grad, final_state, _ = meta_gradient(algorithm, loss_fn, params, support, query, opt,
                                         state, unroll, remat)
    return (grad, final_state) if return_state else grad


def maml_grad(loss_fn: LossFn, params: Params, support: Batch, query: Batch,
              inner_opt: InnerOpt, *, inner_state: optax.OptState | None = None,
              return_state: bool = False, unroll: int | bool = 1, remat: bool = False):
    """Gradient of `loss_fn(adapt(loss_fn, params, support, inner_opt), query)` w.r.t. `params`.

    Second order: differentiates through every inner step (and through the inner
    optimizer's update rule). Keywords as in `fometa.adapt`; with `return_state`
    returns `(grad, final_inner_state)`.
    """
    return _contract("maml", loss_fn, params, support, query, inner_opt, inner_state,
                     return_state, unroll, remat)


def fomaml_grad(loss_fn: LossFn, params: Params, support: Batch, query: Batch,
                inner_opt: InnerOpt, *, inner_state: optax.OptState | None = None,
                return_state: bool = False, unroll: int | bool = 1, remat: bool = False):
    """First-order MAML: the query gradient at the adapted params, taken as constants."""
    return _contract("fomaml", loss_fn, params, support, query, inner_opt, inner_state,
                     return_state, unroll, remat)


def reptile_grad(loss_fn: LossFn, params: Params, support: Batch, inner_opt: InnerOpt, *,
                 inner_state: optax.OptState | None = None, return_state: bool = False,
                 unroll: int | bool = 1, remat: bool = False):
    """Reptile's update direction `params - adapt(loss_fn, params, support, inner_opt)`."""
    return _contract("reptile", loss_fn, params, support, None, inner_opt, inner_state,
                     return_state, unroll, remat)

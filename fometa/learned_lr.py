"""Inner learning rates meta-learned with the initialisation: Meta-SGD's per-parameter rates
(Li et al. 2017) and MAML++'s per-layer, per-step rates (Antoniou et al. 2019, "LSLR").

The meta-parameters become `WithRates(params, rates)`; the inner optimizer (`learned_sgd`)
reads the rates from the parameters it is given, so differentiating the query loss through
the inner loop (MAML) yields the rates' meta-gradient, and the outer optimizer changes the
rates with the initialisation. The inner loop never changes the rates.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fometa.partition import resolve

Params = Any

# What `learn_inner_lr` may be: one rate per parameter (Meta-SGD), or one per parameter
# tensor and inner step (MAML++'s per-layer per-step rates).
KINDS: tuple[str, ...] = ("per-parameter", "per-layer-step")


class WithRates(NamedTuple):
    """Meta-parameters with learned inner learning rates.

    params: the model's initialisation. rates: a tree like `params`; each leaf the
        parameter's shape ("per-parameter") or [steps] ("per-layer-step").
    """

    params: Params
    rates: Params


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"learn_inner_lr {kind!r} is not one of {', '.join(KINDS)}")
    return kind


def _rate_shape(kind: str, steps: int) -> Callable[[jax.Array], tuple[int, ...]]:
    """The shape of a parameter's rates: the parameter's ("per-parameter") or [steps]."""
    check_kind(kind)
    return (lambda p: jnp.shape(p)) if kind == "per-parameter" else (lambda p: (steps,))


def with_rates(params: Params, lr: float, kind: str, steps: int = 1) -> WithRates:
    """`params` with every inner rate set to `lr`: leaves like the params' ("per-parameter")
    or of shape [steps] ("per-layer-step")."""
    shape = _rate_shape(kind, steps)
    return WithRates(params, jax.tree_util.tree_map(
        lambda p: jnp.full(shape(p), lr, jnp.result_type(p)), params))


def uniform_rates(key: jax.Array, params: Params, low: float, high: float, kind: str,
                  steps: int = 1) -> WithRates:
    """`params` with every inner rate drawn uniformly from [low, high), shaped as in
    `with_rates` (Meta-SGD draws its initial rates from [0.005, 0.1]: Li et al. 2017,
    Sec. 4). `meta_learner(...).init` takes the result as it is."""
    shape = _rate_shape(kind, steps)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    rates = [jax.random.uniform(k, shape(p), jnp.result_type(p), low, high)
             for k, p in zip(keys, leaves)]
    return WithRates(params, jax.tree_util.tree_unflatten(tree, rates))


class StepCount(NamedTuple):
    count: jax.Array  # inner steps taken, int32 scalar


def learned_sgd(kind: str) -> optax.GradientTransformation:
    """SGD on `WithRates.params` with the rates that the `WithRates` it updates holds:
    `params <- params - rates * grad` ("per-parameter") or `- rates[k] * grad` at inner
    step k (the last rate beyond the last step: "per-layer-step"). The rates' update is 0."""
    check_kind(kind)

    def init(params: WithRates) -> StepCount:
        del params
        return StepCount(jnp.zeros((), jnp.int32))

    def update(grads: WithRates, state: StepCount, params: WithRates | None = None):
        if params is None:
            raise ValueError("learned_sgd reads its rates from the params: pass them to update")
        if kind == "per-parameter":
            rate = lambda r: r
        else:
            rate = lambda r: r[jnp.minimum(state.count, r.shape[0] - 1)]
        step = jax.tree_util.tree_map(lambda r, g: -rate(r) * g, params.rates, grads.params)
        updates = WithRates(step, jax.tree_util.tree_map(jnp.zeros_like, params.rates))
        return updates, StepCount(state.count + 1)

    return optax.GradientTransformation(init, update)


def model_params(params: Params | WithRates) -> Params:
    """The model's params of meta-parameters that may hold learned rates."""
    return params.params if isinstance(params, WithRates) else params


def on_params(loss_fn: Callable[[Params, Any], jax.Array]
              ) -> Callable[[WithRates, Any], jax.Array]:
    """`loss_fn` of the model's params, as a function of `WithRates`."""
    return lambda meta, batch: loss_fn(meta.params, batch)


def both(mask: Callable[[Params], Any] | Any, rates: bool) -> Callable[[WithRates], Any]:
    """A mask of `WithRates` from a mask of the params: the params as `mask` says, and the
    rates of the same leaves where `rates` (the outer loop), else none (the inner loop)."""
    def of(meta: WithRates):
        m = resolve(mask, meta.params)
        off = jax.tree_util.tree_map(lambda _: False, m)
        return WithRates(m, m if rates else off)

    return of

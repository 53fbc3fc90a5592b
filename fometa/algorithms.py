"""Meta-gradient rules for one task (MAML, first-order MAML, Reptile, and what followed:
Meta-SGD, ANIL, iMAML) and their registry.

Nichol, Achiam and Schulman (2018), "On First-Order Meta-Learning Algorithms":
MAML differentiates the query loss through the whole inner loop; FOMAML takes the query
gradient at the adapted parameters, treating them as constants (Sec. 2); Reptile's update
direction is `phi - W` for the adapted parameters W (Algorithm 1: phi <- phi + eps (W - phi)).
"foml" is the paper's code's first-order MAML (its `--foml`, used in Sec. 6): the last inner
step's parameter change, with Reptile's interpolation as the outer step.
Meta-SGD (Li et al. 2017) is MAML with inner learning rates learned per parameter
(`fometa.learned_lr`); ANIL (Raghu et al. 2020) is MAML whose inner loop adapts a subset
(the head); iMAML (Rajeswaran et al. 2019) solves a proximal inner problem and takes the
implicit meta-gradient by conjugate gradient on Hessian-vector products.
"""

from __future__ import annotations

import inspect
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from fometa.inner import (Batch, InnerOpt, LossFn, Params, all_finite, as_optimizer,
                          check_positive, check_support_and_query, inner_loop, inner_path,
                          start_state, whole)

# run_inner(params, support=None, state=None, loss=None, each=None) -> (adapted params,
# final inner optimizer state, loss before each step [steps]): the inner loop from `params`
# on `support` (default: the task's) from optimizer state `state` (default: the task's
# starting state), minimising `loss` (default: the task's loss_fn); with `each`, also
# `each(params after every step)` stacked [steps, ...] as a fourth output.
InnerRun = Callable[..., tuple[Params, optax.OptState, jax.Array]]


class Rule(NamedTuple):
    """A meta-gradient rule: how one task's meta-gradient follows from its inner loop.

    grad(loss_fn, run_inner, params, support, query) -> (grad, final_inner_state, losses,
        query_loss): `run_inner` runs the task's inner loop (differentiable, see
        `InnerRun`); `losses` [steps] are its support losses; `query_loss` is None where
        there is none.
    needs_query: `grad` reads the query batch (None is refused).
    interpolates: the meta-gradient is a parameter difference, applied by Reptile's
        interpolation `phi <- phi - eps * grad` (`fometa.reptile_outer`) rather than by a
        gradient optimizer (Adam).
    second_order: `grad` differentiates through the inner loop (MAML), so the inner
        optimizer's update must have a finite derivative (`check_differentiable`).
    options: `grad`'s keyword hyperparameters and their defaults (iMAML's `lam`,
        `cg_steps`, `hessian_batches`); `meta_learner(..., options=)` overrides them.
    learn_inner_lr: the inner learning rates the rule meta-learns (a `fometa.learned_lr`
        kind: Meta-SGD's "per-parameter"), or None.
    adapts_subset: the inner loop adapts only a subset of the parameters, which
        `meta_learner(..., inner_trainable=)` must name (ANIL: the head).
    """

    grad: Callable[..., tuple[Params, optax.OptState, jax.Array, Optional[jax.Array]]]
    needs_query: bool = True
    interpolates: bool = False
    second_order: bool = False
    options: Mapping[str, Any] = MappingProxyType({})
    learn_inner_lr: Optional[str] = None
    adapts_subset: bool = False


def _maml(loss_fn: LossFn, run_inner: InnerRun, params: Params, support: Batch,
          query: Batch, step_weights: jax.Array | None = None):
    """MAML; with `step_weights` [steps], MAML++'s multi-step loss: the query loss after
    every inner step, weighted (Antoniou et al. 2019, Sec. 4 "MSL"); the reported query
    loss is still the one after the last step."""
    def query_loss(p):
        if step_weights is None:
            adapted, state, losses = run_inner(p)
            final = loss_fn(adapted, query)
            return final, (state, losses, final)
        _, state, losses, after = run_inner(p, each=lambda w: loss_fn(w, query))
        return jnp.dot(step_weights, after), (state, losses, after[-1])

    (_, (state, losses, qloss)), grad = jax.value_and_grad(query_loss, has_aux=True)(params)
    return grad, state, losses, qloss


def _fomaml(loss_fn: LossFn, run_inner: InnerRun, params: Params, support: Batch,
            query: Batch):
    adapted, state, losses = run_inner(params)
    qloss, grad = jax.value_and_grad(loss_fn)(jax.lax.stop_gradient(adapted), query)
    return grad, state, losses, qloss


def _reptile(loss_fn: LossFn, run_inner: InnerRun, params: Params, support: Batch,
             query: Batch | None):
    adapted, state, losses = run_inner(params)
    grad = jax.tree_util.tree_map(lambda p, w: p - w, params, adapted)
    qloss = None if query is None else loss_fn(adapted, query)
    return grad, state, losses, qloss


def _foml(loss_fn: LossFn, run_inner: InnerRun, params: Params, support: Batch,
          query: Batch | None):
    """The paper's code's first-order MAML (supervised-reptile, reptile.py, `FOML`): the
    update is the last inner step's parameter change (after the inner optimizer's scaling),
    applied by Reptile's interpolation: grad = W_{k-1} - W_k."""
    head, tail = (jax.tree_util.tree_map(lambda a: a[:-1], support),
                  jax.tree_util.tree_map(lambda a: a[-1:], support))
    before, state, head_losses = run_inner(params, head)
    adapted, state, tail_loss = run_inner(before, tail, state)
    grad = jax.tree_util.tree_map(lambda b, w: b - w, before, adapted)
    qloss = None if query is None else loss_fn(adapted, query)
    return grad, state, jax.numpy.concatenate([head_losses, tail_loss]), qloss


def _dot(a: Params, b: Params) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in
               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _sq_dist(a: Params, b: Params) -> jax.Array:
    diff = jax.tree_util.tree_map(jnp.subtract, a, b)
    return _dot(diff, diff)


def conjugate_gradient(matvec: Callable[[Params], Params], b: Params, steps: int) -> Params:
    """x with A x ~ b, by `steps` iterations of conjugate gradient from x = 0, A symmetric
    positive definite given by `matvec`; an iteration changes nothing once the residual's
    norm is at most 1e-5 of b's (`jax.scipy.sparse.linalg.cg`'s default tolerance, which
    gives the same x). Unlike that function it does not evaluate A at x = 0: iMAML's A
    holds Hessian-vector products, and that one was a wasted product per task and a second
    copy of the whole second-order program for XLA to compile."""
    gamma = _dot(b, b)
    threshold = 1e-10 * gamma  # (1e-5 |b|)^2

    def axpy(a, x, y):  # a x + y, leaf by leaf, in the leaves' dtype (optax's tree_add_scale
        # would promote bfloat16 leaves to the scalar's float32)
        return jax.tree_util.tree_map(lambda xi, yi: a.astype(xi.dtype) * xi + yi, x, y)

    def iteration(_, carry):
        x, r, p, gamma = carry
        going = gamma > threshold
        ap = matvec(p)
        alpha = jnp.where(going, gamma / jnp.where(going, _dot(p, ap), 1.0), 0.0)
        x, r = axpy(alpha, p, x), axpy(-alpha, ap, r)
        new_gamma = _dot(r, r)
        beta = jnp.where(going, new_gamma / jnp.where(going, gamma, 1.0), 0.0)
        return x, r, axpy(beta, p, r), jnp.where(going, new_gamma, gamma)

    zero = jax.tree_util.tree_map(jnp.zeros_like, b)
    return jax.lax.fori_loop(0, steps, iteration, (zero, b, b, gamma))[0]


def _imaml(loss_fn: LossFn, run_inner: InnerRun, params: Params, support: Batch,
           query: Batch, lam: float = 1.0, cg_steps: int = 5,
           hessian_batches: Optional[int] = None):
    """iMAML (Rajeswaran et al. 2019, Algorithm 2): the inner loop minimises the proximal
    objective L(phi) + lam/2 |phi - theta|^2 from theta; the meta-gradient solves
    (I + H/lam) g = grad L_query(phi) by `cg_steps` of `conjugate_gradient`, H the Hessian of
    the support loss at phi, by Hessian-vector products: the mean over the support's last
    `hessian_batches` batches (None: all of them). Where every batch is the whole support in
    another order (full-batch inner steps, as in imaml_dev) one batch gives the same H for
    1/steps of the products. Nothing is differentiated through the inner loop: memory is flat
    in its steps."""
    steps = jax.tree_util.tree_leaves(support)[0].shape[0]
    if not steps:
        raise ValueError("imaml needs at least one inner step: H is the support loss's "
                         "Hessian, averaged over the support's batches, and there are none")
    if not whole(cg_steps, 1):
        raise ValueError(f"cg_steps must be a Python integer >= 1, not {cg_steps!r}")
    check_positive(lam, "lam (the proximal regularisation)")
    batches = steps  # how many of the support's last batches H averages over
    if hessian_batches is not None:
        if not (whole(hessian_batches, 1) and hessian_batches <= steps):
            raise ValueError(f"hessian_batches must be a Python integer from 1 to the "
                             f"{steps} support batches, or None (all), not {hessian_batches!r}")
        batches = int(hessian_batches)
    theta = jax.lax.stop_gradient(params)
    proximal = lambda p, batch: loss_fn(p, batch) + 0.5 * lam * _sq_dist(p, theta)
    adapted, state, losses = run_inner(theta, loss=proximal)
    adapted = jax.lax.stop_gradient(adapted)
    qloss, query_grad = jax.value_and_grad(loss_fn)(adapted, query)
    curvature = jax.tree_util.tree_map(lambda a: a[steps - batches:], support)

    def matvec(v):
        # H v summed batch by batch in a scan: memory holds one batch's products at a time.
        def add(total, batch):
            # Reverse over reverse (the gradient of <grad L, v>), not jvp of grad: networks
            # with custom VJPs (fometa.convnets' pooling) have no forward-mode rule.
            hv = jax.grad(lambda p: _dot(jax.grad(loss_fn)(p, batch), v))(adapted)
            return jax.tree_util.tree_map(jnp.add, total, hv), None

        zero = jax.tree_util.tree_map(jnp.zeros_like, v)
        hv = jax.lax.scan(add, zero, curvature)[0]
        return jax.tree_util.tree_map(lambda x, h: x + h / (lam * batches), v, hv)

    return conjugate_gradient(matvec, query_grad, cg_steps), state, losses, qloss


# The registry of meta-gradient rules by name; `register_algorithm` adds to it, and the
# command line, settings and presets read their choices from it.
ALGORITHMS: dict[str, Rule] = {
    "reptile": Rule(_reptile, needs_query=False, interpolates=True),
    "fomaml": Rule(_fomaml),
    "maml": Rule(_maml, second_order=True),
    "foml": Rule(_foml, needs_query=False, interpolates=True),
    "meta-sgd": Rule(_maml, second_order=True, learn_inner_lr="per-parameter"),
    "anil": Rule(_maml, second_order=True, adapts_subset=True),
    "imaml": Rule(_imaml, options=MappingProxyType({"lam": 1.0, "cg_steps": 5,
                                                    "hessian_batches": None})),
}
Algorithm = Union[str, Rule]  # a registered name, or a rule itself


def register_algorithm(name: str, rule: Rule) -> Rule:
    """Adds `rule` to `ALGORITHMS` under `name` (an existing name is refused)."""
    if name in ALGORITHMS:
        raise ValueError(f"algorithm {name!r} is already registered")
    if not isinstance(rule, Rule):
        raise TypeError(f"expected a fometa.algorithms.Rule, got {type(rule).__name__}")
    ALGORITHMS[name] = rule
    return rule


def get_rule(algorithm: Algorithm) -> Rule:
    """The rule that `algorithm` names (or `algorithm` itself, if it is a `Rule`)."""
    if isinstance(algorithm, Rule):
        return algorithm
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; expected one of "
                         f"{', '.join(ALGORITHMS)}")
    return ALGORITHMS[algorithm]


def check_differentiable(opt: optax.GradientTransformation, params: Params) -> None:
    """A ValueError if `opt`'s update, from its initial state, is not finite or has a
    non-finite derivative at a zero gradient: a second-order meta-gradient through it would
    be NaN wherever a gradient is exactly zero (Adam without eps_root: d sqrt(nu) / d nu is
    infinite at nu = 0; a NaN learning rate: the update itself).
    Runs at trace time (also under jit) on zeros of the params' shapes, as one small
    compiled program: dispatched op by op (or under `ensure_compile_time_eval`) it cost
    about a second of a MAML preset's compile time on a 2-core CPU."""
    def finite_update():  # (the update at a zero gradient, its derivative): finite?
        zeros = jax.tree_util.tree_map(
            lambda p: jnp.zeros(jnp.shape(p), jnp.result_type(p)), params)
        state = opt.init(zeros)
        ones = jax.tree_util.tree_map(jnp.ones_like, zeros)
        primal, tangent = jax.jvp(lambda g: opt.update(g, state, zeros)[0], (zeros,), (ones,))
        return tuple(all_finite(x) for x in (primal, tangent))

    if jax.config.jax_disable_jit:  # no compiled programs (a debugging session): op by op
        try:
            value, derivative = (bool(f) for f in finite_update())
        except jax.errors.ConcretizationTypeError:
            return  # the optimizer's hyperparameters are traced: nothing to probe concretely
    else:
        traced = jax.jit(finite_update).trace()
        if traced.jaxpr.in_avals:
            return  # it closes over traced values (the optimizer's hyperparameters): no probe
        value, derivative = (bool(f) for f in traced.lower().compile()())
    if value and derivative:
        return
    dtypes = " and ".join(sorted({str(jnp.result_type(x))
                                  for x in jax.tree_util.tree_leaves(params)}))
    if not value:
        raise ValueError("inner_opt's update is not finite (NaN or inf) at a zero gradient, "
                         "from its initial state: look at its hyperparameters (a NaN or "
                         f"infinite learning rate, an eps that is 0 in the params' {dtypes})")
    raise ValueError("inner_opt's update has a non-finite derivative at a zero gradient "
                     "(Adam: sqrt(nu) at nu = 0), so this second-order meta-gradient "
                     "would be NaN; give it eps_root > 0, e.g. optax.adam(lr, "
                     "eps_root=1e-8), large enough not to round to 0 in the params' "
                     f"{dtypes}")


def meta_gradient(algorithm: Algorithm, loss_fn: LossFn, params: Params, support: Batch,
                  query: Batch | None, opt: optax.GradientTransformation,
                  opt_state: optax.OptState, unroll: int | bool = 1, remat: bool = False,
                  options: Mapping[str, Any] | None = None):
    """One task's meta-gradient (`unroll`, `remat`: as in `fometa.inner.inner_loop`).

    `algorithm`: a name in `ALGORITHMS` or a `Rule`; `options`: keyword hyperparameters of
    its `grad` (default: the rule's `options`). Returns `(grad, final_inner_state,
    metrics)` where `metrics` holds `support_loss` (the loss on the first support batch,
    before adaptation; absent with zero inner steps) and, where the rule computes one,
    `query_loss` (the loss on `query` after adaptation).
    """
    rule = get_rule(algorithm)
    if rule.needs_query and query is None:
        name = algorithm if isinstance(algorithm, str) else next(
            (n for n, r in ALGORITHMS.items() if r is rule), rule.grad.__name__)
        raise ValueError(f"{name!r} needs a query batch")
    if query is not None:
        check_support_and_query(support, query)
    if rule.second_order:
        check_differentiable(opt, params)

    def run_inner(p, batches=None, state=None, loss=None, each=None):
        batches = support if batches is None else batches
        state = opt_state if state is None else state
        loss = loss_fn if loss is None else loss
        if each is None:
            return inner_loop(loss, p, batches, opt, state, unroll, remat)
        return inner_path(loss, p, batches, opt, state, each, unroll, remat)

    grad, state, losses, qloss = rule.grad(loss_fn, run_inner, params, support, query,
                                           **rule_options(rule, options))
    # No support_loss with zero inner steps (there is no support batch to evaluate).
    metrics = {"support_loss": losses[0]} if losses.shape[0] else {}
    if qloss is not None:
        metrics["query_loss"] = qloss
    return grad, state, metrics


def rule_options(rule: Rule, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The rule's options with `options` over them; a ValueError naming any that the rule's
    `grad` does not take."""
    options = dict(options or {})
    accepted = inspect.signature(rule.grad).parameters
    unknown = [name for name in options if name not in accepted]
    if unknown:
        raise ValueError(f"options {unknown} do not apply to this algorithm; it takes "
                         f"{sorted(rule.options) or 'none'}")
    return {**rule.options, **options}


def _contract(algorithm, loss_fn, params, support, query, inner_opt, inner_state,
              return_state, unroll, remat):
    opt = as_optimizer(inner_opt)
    state = start_state(opt, params, inner_state)
    grad, final_state, _ = meta_gradient(algorithm, loss_fn, params, support, query, opt,
                                         state, unroll, remat)
    return (grad, final_state) if return_state else grad


def maml_grad(loss_fn: LossFn, params: Params, support: Batch, query: Batch,
              inner_opt: InnerOpt, *, inner_state: optax.OptState | None = None,
              return_state: bool = False, unroll: int | bool = 1, remat: bool = False):
    """Gradient of `loss_fn(adapt(loss_fn, params, support, inner_opt), query)` w.r.t. `params`.

    Second order: differentiates through every inner step (and through the inner
    optimizer's update rule), from a starting state held constant (`inner_state`, or
    `inner_opt.init(params)` taken as a constant: an optimizer whose state copies the params,
    such as schedule-free SGD's, gets no gradient through that copy). Keywords as in
    `fometa.adapt`; with `return_state` returns `(grad, final_inner_state)`.
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

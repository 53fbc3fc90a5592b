"""Meta-learners: a pure `init`/`step` pair for any meta-gradient rule over task batches."""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fometa import learned_lr
from fometa import per_step as stepwise
from fometa.algorithms import ALGORITHMS, Algorithm, get_rule, meta_gradient, rule_options
from fometa.inner import (InnerOpt, LossFn, Params, all_finite, as_optimizer, check_positive,
                          check_support_and_query, inner_loop, inner_path, leading_size,
                          num_steps, whole)
from fometa.partition import Mask, only
from fometa.tasks.base import Task


class MetaState(NamedTuple):
    """Everything a meta-learner carries between meta-iterations."""

    params: Params
    outer_state: optax.OptState
    inner_state: optax.OptState  # the inner optimizer's starting state (carried or initial)
    step: jax.Array  # meta-iterations done, int32 scalar


class MetaLearner(NamedTuple):
    """A meta-learning algorithm as pure functions.

    init(params) -> MetaState
    step(state, tasks) -> (state, metrics): one meta-iteration on a task batch (a `Task`
        whose leaves have a leading axis of tasks); metrics are means over the tasks.
    adapt(state, support, steps=None, each=None) -> adapted params for one task, starting
        from the state's params and inner optimizer state (the support's leading axis sets
        the steps); with `steps` (increasing step counts, the last at most the support's),
        `each(params)` (default: the params) after each of those numbers of steps, in one
        pass, stacked on a leading axis.
    """

    init: Callable[[Params], MetaState]
    step: Callable[[MetaState, Task], tuple[MetaState, dict[str, jax.Array]]]
    adapt: Callable[..., Params]


def reptile_outer(meta_step: float, meta_iters: int | None = None,
                  final_meta_step: float = 0.0) -> optax.GradientTransformation:
    """Reptile's outer update `phi <- phi + eps * mean_tasks(W - phi)` as an optax optimizer.

    Applied to `reptile_grad` (= phi - W) it is SGD with learning rate eps. With
    `meta_iters`, eps anneals linearly from `meta_step` to `final_meta_step` over that many
    meta-iterations, as in the paper's code.
    """
    check_positive(meta_step, "reptile_outer's meta_step")
    check_positive(final_meta_step, "reptile_outer's final_meta_step", zero_ok=True)
    if meta_iters is not None and not whole(meta_iters, 1):
        raise ValueError(f"reptile_outer's meta_iters must be a whole number >= 1 or None, "
                         f"got {meta_iters!r}")
    if meta_iters is None:
        return optax.sgd(meta_step)
    return optax.sgd(optax.linear_schedule(meta_step, final_meta_step, meta_iters))


def _mean_over_tasks(tree):
    """Mean over the leading (task) axis of every leaf."""
    def mean(x):
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            # Integer leaves (e.g. Adam's step count) are equal across tasks; keep the dtype.
            return jnp.mean(x, axis=0).astype(x.dtype)
        # A contraction with 1/T weights, not jnp.mean: XLA:CPU (jax 0.10) runs a reduction
        # over the leading axis of [5, 576, 64] in 846 us, this dot in 22 us.
        return jnp.tensordot(jnp.full(x.shape[:1], 1.0 / x.shape[0], x.dtype), x, axes=1)
    return jax.tree_util.tree_map(mean, tree)


def as_task_batch(tasks: Any) -> Task:
    """`tasks` as a `Task` (a mapping with "support" and "query" is accepted) whose leaves
    share a leading axis of tasks; a TypeError or ValueError saying what is wrong otherwise."""
    if isinstance(tasks, Mapping) and "support" in tasks:
        tasks = Task(tasks["support"], tasks.get("query"))
    if not isinstance(tasks, Task):
        raise TypeError(f"expected a fometa.Task (support, query) batch of tasks, got "
                        f"{type(tasks).__name__}")
    leading_size(tasks, "tasks", " (for one task: jax.tree_util.tree_map(lambda x: x[None], "
                 "task))")
    return tasks


def meta_learner(algorithm: Algorithm, loss_fn: LossFn, inner_opt: InnerOpt,
                 outer_opt: optax.GradientTransformation | None = None, *,
                 carry_inner_state: bool = False, sequential_tasks: bool = False,
                 unroll: int | bool = 1, remat: bool = False,
                 check_finite: bool = False, trainable: Mask | None = None,
                 inner_trainable: Mask | None = None,
                 options: Mapping[str, Any] | None = None,
                 learn_inner_lr: str | None = None, inner_steps: int | None = None,
                 first_order_iters: int = 0,
                 multi_step_iters: int | None = None,
                 per_step: Mask | None = None,
                 tasks_at_once: int | None = None) -> MetaLearner:
    """Builds a meta-learner.

    Args:
      algorithm: a name in `fometa.ALGORITHMS` ("maml", "fomaml", "reptile", or one
        added with `fometa.register_algorithm`), or a `fometa.algorithms.Rule`.
      loss_fn: `loss_fn(params, batch) -> scalar`.
      inner_opt: optax transformation or SGD learning rate for the inner loop.
      outer_opt: the meta-optimizer applied to the task-mean meta-gradient. Default:
        `reptile_outer(0.1)` for rules that interpolate (Reptile), else Adam(1e-3).
      carry_inner_state: keep the inner optimizer's state across meta-iterations (the
        mean of the tasks' final states), as the paper's Reptile code does with Adam;
        otherwise every task starts from `inner_opt.init(params)`.
      sequential_tasks: run a task batch's tasks one after another (`lax.scan`) rather
        than in parallel (`vmap`): each starts from the params, and from the inner
        optimizer state that the previous task left, and with `carry_inner_state` the
        last task's final state carries on. This is what the paper's code computes (its
        Adam's state runs on through the meta-batch); parallel tasks carry the mean.
      unroll: `jax.lax.scan` unrolling of the inner loop.
      remat: rematerialise the inner steps (`fometa.inner.inner_loop`): MAML's
        second-order gradient then keeps only each step's params, optimizer state and
        batch, not its activations, and recomputes them. No effect on the results; on
        the CPU MAML is also faster with it.
      check_finite: the step's metrics also hold "finite": 1.0 if the new state (params and
        both optimizer states) and the step's losses are all finite, else 0.0 (divergence).
      trainable: the leaves that both loops change (a pytree of bools like the params, or a
        function of the params giving one, `fometa.partition`); the others stay as
        initialised: a flax model's "batch_stats" (`fometa.partition.collections()`).
      inner_trainable: the leaves the inner loop adapts (default: `trainable`); the outer
        loop still changes every trainable leaf (ANIL: the head only; "anil" needs it).
      options: the algorithm's keyword hyperparameters (`Rule.options`; iMAML's `lam`,
        `cg_steps` and `hessian_batches`).
      learn_inner_lr: meta-learn the inner learning rates with the initialisation
        (`fometa.learned_lr`): "per-parameter" (Meta-SGD; the default of "meta-sgd") or
        "per-layer-step" (MAML++'s LSLR, with `inner_steps` rates per parameter tensor).
        `inner_opt` is then the rates' initial value (a float), unless `init` is given a
        `fometa.learned_lr.WithRates` (e.g. `learned_lr.uniform_rates`: Meta-SGD's random
        initial rates); the state's params are a `WithRates`, and `adapt` returns the
        model's params.
      first_order_iters: MAML++'s derivative-order annealing: the first `first_order_iters`
        meta-iterations take the first-order gradient (FOMAML's), then the second-order one.
      multi_step_iters: MAML++'s multi-step loss: the query loss after every inner step,
        with weights annealed over `multi_step_iters` meta-iterations from uniform towards
        the last step's (`multi_step_weights`); afterwards the last step's loss alone.
      per_step: the leaves that take one value per inner step (a mask of the model's
        params; MAML++'s per-step batch-norm weights and biases: `fometa.partition.by_path(
        lambda path: "norm" in path)` for fometa's convnets), `inner_steps` values each,
        meta-learned, not adapted by the inner loop (`fometa.per_step`). Second-order
        rules only, without `first_order_iters` or `carry_inner_state`.
      tasks_at_once: parallel tasks are vmapped this many at a time, the groups one after
        another (`jax.lax.map(..., batch_size=tasks_at_once)`; 1: `jax.lax.map` of the
        unbatched task); None: all at once. The same computation, rounded differently in
        float32; on the CPU, one at a time is faster for Mini-ImageNet's 84x84 images and
        for Omniglot's meta-batches from 160 images per step, or rematerialised (a smaller
        working set per task; benchmarks/README.md).
        A count that does not divide the task batch compiles the step a second time for the
        rest. For a task batch on one device (not with `sequential_tasks`, nor sharded).
    """
    rule = get_rule(algorithm)
    options = rule_options(rule, options)
    if tasks_at_once is not None and (isinstance(tasks_at_once, bool)
                                      or not isinstance(tasks_at_once, int) or tasks_at_once < 1):
        raise ValueError(f"tasks_at_once must be a whole number >= 1 or None; "
                         f"got {tasks_at_once!r}")
    if tasks_at_once is not None and sequential_tasks:
        raise ValueError("tasks_at_once groups parallel tasks; with sequential_tasks=True they "
                         "run one after another already")
    learn_inner_lr = learn_inner_lr or rule.learn_inner_lr
    if rule.adapts_subset and inner_trainable is None:
        raise ValueError(f"{algorithm!r} adapts a subset of the parameters in its inner loop: "
                         "name it with inner_trainable (e.g. the head: fometa.partition.by_path("
                         "lambda path: 'logits' in path))")
    if (first_order_iters or multi_step_iters) and not rule.second_order:
        raise ValueError(f"first_order_iters and multi_step_iters apply to second-order "
                         f"algorithms (maml, meta-sgd, anil), not {algorithm!r}")
    if inner_steps is not None and not whole(inner_steps, 1):
        raise ValueError(f"inner_steps must be a whole number >= 1 or None, got {inner_steps!r}")
    if not whole(first_order_iters, 0):
        raise ValueError(f"first_order_iters must be a whole number >= 0, got "
                         f"{first_order_iters!r}")
    if multi_step_iters is not None:
        if not whole(multi_step_iters, 1):
            raise ValueError(f"multi_step_iters must be a whole number >= 1 (meta-iterations "
                             f"of annealing) or None, got {multi_step_iters!r}")
        rule_options(rule, {"step_weights": None})  # refused unless the rule takes them
    if per_step is not None:
        if not rule.second_order or first_order_iters or carry_inner_state:
            raise ValueError("per_step values are meta-learned through the inner loop: they "
                             "need a second-order algorithm (maml, meta-sgd, anil) without "
                             "first_order_iters or carry_inner_state")
        if not inner_steps:
            raise ValueError("per_step needs inner_steps (how many values each leaf has)")
    # Their inner state counts a task's inner steps (value k at step k): a task that starts
    # from a carried state (the previous task's, or meta-iteration's) would start at its count.
    indexed = ("per_step values" if per_step is not None else
               "per-layer-step learning rates" if learn_inner_lr == "per-layer-step" else None)
    carried = ("sequential_tasks" if sequential_tasks else
               "carry_inner_state" if carry_inner_state else None)
    if indexed and carried:
        raise ValueError(f"{indexed} are indexed by a task's inner step: they need each task "
                         f"to start its own inner loop (not {carried})")
    if learn_inner_lr is not None:
        learned_lr.check_kind(learn_inner_lr)
        if isinstance(inner_opt, optax.GradientTransformation):
            raise ValueError("with learned inner learning rates, inner_opt is their initial "
                             "value: a float, not an optax optimizer")
        if learn_inner_lr == "per-layer-step" and not inner_steps:
            raise ValueError("per-layer-step learning rates need inner_steps (how many rates "
                             "each parameter tensor has)")
        as_optimizer(inner_opt)  # a finite number > 0, or a ValueError saying so
        initial_lr = inner_opt
        opt = learned_lr.learned_sgd(learn_inner_lr)
        loss_fn = learned_lr.on_params(loss_fn)
        if inner_trainable is not None:
            inner_trainable = learned_lr.both(inner_trainable, rates=False)
        if trainable is not None:
            trainable = learned_lr.both(trainable, rates=True)
    else:
        opt = as_optimizer(inner_opt)
    if outer_opt is None:
        outer_opt = reptile_outer(0.1) if rule.interpolates else optax.adam(1e-3)
    if not (callable(getattr(outer_opt, "init", None))
            and callable(getattr(outer_opt, "update", None))):  # optax.MultiSteps is no tuple
        raise TypeError(f"outer_opt must be an optax optimizer (init and update, e.g. "
                        f"optax.adam(1e-3)), got {type(outer_opt).__name__}")
    inner_trainable = trainable if inner_trainable is None else inner_trainable
    if inner_trainable is not None:
        opt = only(opt, inner_trainable)
    if per_step is not None:
        select = learned_lr.both(per_step, rates=False) if learn_inner_lr else per_step
        opt = stepwise.advance(opt, select)
        loss_fn = stepwise.on_params(loss_fn)
        if trainable is not None:
            trainable = stepwise.extend(trainable, select)
    if trainable is not None:
        outer_opt = only(outer_opt, trainable)
    first_order = ALGORITHMS["fomaml"]

    def task_start(state: MetaState) -> optax.OptState:
        return state.inner_state if carry_inner_state else opt.init(state.params)

    def init(params: Params) -> MetaState:
        if learn_inner_lr is not None and not isinstance(params, learned_lr.WithRates):
            params = learned_lr.with_rates(params, initial_lr, learn_inner_lr, inner_steps or 1)
        if per_step is not None:
            params = stepwise.per_step(params, select, inner_steps)
        return MetaState(params, outer_opt.init(params), opt.init(params),
                         jnp.zeros((), jnp.int32))

    def all_tasks(state: MetaState, tasks: Task, task_rule, task_options):
        inner0 = task_start(state)

        def one_task(support, query, inner):
            return meta_gradient(task_rule, loss_fn, state.params, support, query, opt,
                                 inner, unroll, remat, task_options)

        if sequential_tasks:
            def next_task(inner, task):
                grad, final, metrics = one_task(task.support, task.query, inner)
                return final, (grad, metrics)

            final, (grads, metrics) = jax.lax.scan(next_task, inner0, tasks)
            return grads, final, metrics
        if tasks_at_once is not None and tasks_at_once < leading_size(tasks, "tasks"):
            # One at a time without a batch axis: a vmap of one task gives every product a
            # batch axis of size 1, measured slower (benchmarks/README.md, "... and MAML's
            # rematerialised steps").
            grads, finals, metrics = jax.lax.map(
                lambda task: one_task(task.support, task.query, inner0), tasks,
                batch_size=None if tasks_at_once == 1 else tasks_at_once)
        else:
            grads, finals, metrics = jax.vmap(one_task, in_axes=(0, 0, None))(
                tasks.support, tasks.query, inner0)
        return grads, _mean_over_tasks(finals), metrics

    def step(state: MetaState, tasks: Task):
        tasks = as_task_batch(tasks)
        task_options = dict(options)
        if multi_step_iters is not None:
            steps = jax.tree_util.tree_leaves(tasks.support)[0].shape[1]  # [tasks, steps, ...]
            task_options["step_weights"] = multi_step_weights(steps, state.step,
                                                              multi_step_iters)
        second = lambda: all_tasks(state, tasks, rule, task_options)
        if first_order_iters:
            first = lambda: all_tasks(state, tasks, first_order, {})
            grads, final, metrics = jax.lax.cond(state.step < first_order_iters, first, second)
        else:
            grads, final, metrics = second()
        updates, outer_state = outer_opt.update(_mean_over_tasks(grads), state.outer_state,
                                                state.params)
        params = optax.apply_updates(state.params, updates)
        inner_state = final if carry_inner_state else state.inner_state
        metrics = jax.tree_util.tree_map(jnp.mean, metrics)
        if check_finite:  # every float of the new state (params, both optimizer states)
            metrics["finite"] = all_finite((params, outer_state, inner_state, metrics)
                                           ).astype(jnp.float32)
        return MetaState(params, outer_state, inner_state, state.step + 1), metrics

    def adapt(state: MetaState, support, steps: tuple[int, ...] | None = None,
              each: Callable[[Params], Any] | None = None) -> Any:
        if steps is None:
            adapted, _, _ = inner_loop(loss_fn, state.params, support, opt, task_start(state),
                                       unroll)
            return model_params(adapted)
        steps = tuple(steps)
        if (not steps or not all(whole(k, 0) for k in steps)
                or list(steps) != sorted(set(steps)) or steps[-1] > num_steps(support)):
            raise ValueError(f"steps {steps} must be whole numbers that increase from 0 or "
                             f"more and end at most at the support's {num_steps(support)} "
                             "inner steps")
        each = model_params if each is None else (lambda p, f=each: f(model_params(p)))
        # One loop records every count, 0 included (one copy of the step and of `each`).
        upto = jax.tree_util.tree_map(lambda a: a[:steps[-1]], support)
        _, _, _, path = inner_path(loss_fn, state.params, upto, opt, task_start(state),
                                   each, unroll, at=steps)
        return path

    return MetaLearner(init, step, adapt)


def model_params(params: Params) -> Params:
    """The model's parameters in a meta-learner's params: without learned inner rates
    (`fometa.learned_lr`) or later steps' values (`fometa.per_step`)."""
    return learned_lr.model_params(stepwise.model_params(params))


def multi_step_weights(steps: int, iteration: jax.Array, anneal_iters: int) -> jax.Array:
    """MAML++'s per-step query-loss weights [steps] at meta-iteration `iteration`
    (HowToTrainYourMAMLPytorch, few_shot_learning_system.py,
    get_per_step_loss_importance_vector, with meta-iterations for epochs): uniform at 0;
    each non-final weight falls linearly by 1/steps over `anneal_iters` (to at least
    0.03/steps), the final one rises to match; from `anneal_iters` on, the last step's alone."""
    t = jnp.asarray(iteration, jnp.float32) / anneal_iters
    floor = 0.03 / steps
    early = jnp.maximum(1.0 / steps - t / steps, floor) * jnp.ones(steps - 1)
    last = jnp.minimum(1.0 / steps + t * (steps - 1) / steps, 1.0 - (steps - 1) * floor)
    annealed = jnp.concatenate([early, last[None]])
    return jnp.where(t < 1.0, annealed, jax.nn.one_hot(steps - 1, steps))


def evaluate(learner: MetaLearner, state: MetaState, tasks: Task,
             metric_fn: Callable[[Params, Any], jax.Array],
             steps: tuple[int, ...] | None = None) -> Any:
    """Adapts to each task of a batch and returns `metric_fn(adapted, query)` for each
    (leaves [tasks]); with `steps`, the metric after each of those numbers of inner steps
    (leaves [tasks, len(steps)]), from one adaptation per task."""
    def one(t: Task):
        check_support_and_query(t.support, t.query)
        if steps is None:
            return metric_fn(learner.adapt(state, t.support), t.query)
        return learner.adapt(state, t.support, steps, lambda p: metric_fn(p, t.query))

    return jax.vmap(one)(tasks)

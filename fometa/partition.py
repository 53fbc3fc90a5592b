"""Which parameters an optimizer changes: an optax optimizer restricted to a subset of a
pytree (the others stay fixed), and masks that pick flax collections or leaves by path.

Uses: a flax model's non-trainable collections (`batch_stats`) kept out of the inner and
outer updates (`meta_learner(..., trainable=collections(("params",)))`), or ANIL's inner
loop that adapts only the head (`meta_learner(..., inner_trainable=...)`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import jax
import optax

Mask = Union[Any, Callable[[Any], Any]]  # a pytree of bools like the params, or params -> one


def resolve(mask: Mask, params: Any) -> Any:
    """The pytree of bools that `mask` gives for `params` (itself, or its call on them)."""
    return mask(params) if callable(mask) else mask


def only(opt: optax.GradientTransformation, trainable: Mask) -> optax.GradientTransformation:
    """`opt` on the leaves where `trainable` is True; the other leaves' updates are zero
    and `opt` keeps no state for them (`optax.multi_transform`)."""
    def labels(params):
        return jax.tree_util.tree_map(lambda t: "trained" if t else "fixed",
                                      resolve(trainable, params))

    return optax.multi_transform({"trained": opt, "fixed": optax.set_to_zero()}, labels)


def collections(names: Sequence[str] = ("params",)) -> Callable[[Any], Any]:
    """A mask function for flax variables {collection: tree}: True under the collections
    `names` (default: the trainable "params"), False elsewhere (e.g. "batch_stats")."""
    def mask(variables):
        return {k: jax.tree_util.tree_map(lambda _: k in names, v) for k, v in variables.items()}

    return mask


def by_path(select: Callable[[str], bool]) -> Callable[[Any], Any]:
    """A mask function: True for the leaves whose path (`jax.tree_util.keystr`, e.g.
    "['params']['Dense_2']['kernel']") `select` accepts."""
    def mask(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: bool(select(jax.tree_util.keystr(path))), params)

    return mask

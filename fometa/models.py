"""Networks from the paper, as flax modules with a pure `apply`."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from fometa.inner import whole

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


def check_widths(module: nn.Module, **widths: Sequence[int]) -> None:
    """A ValueError naming `module`'s field unless each of `widths` is whole numbers >= 1
    (a width of 0 or less fails deep inside the initialisers)."""
    for name, values in widths.items():
        if not all(whole(v, 1) for v in values):
            raise ValueError(f"{type(module).__name__}({name}={getattr(module, name)!r}): "
                             "widths must be whole numbers >= 1")


def check_input(module: nn.Module, x: jax.Array, ndim: int, layout: str) -> None:
    """A ValueError naming `module` unless `x` is a float array of `ndim` axes (`layout`)."""
    if jnp.ndim(x) != ndim or not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise ValueError(f"{type(module).__name__} takes a float array {layout}; got "
                         f"{jnp.result_type(x)} {jnp.shape(x)} (scale integer images, e.g. "
                         "x.astype(jnp.float32) / 255)")


class MLP(nn.Module):
    """Fully connected network: hidden layers with `activation`, then a linear output.

    The paper's sine network is MLP((64, 64), 1, "tanh"); MAML's is MLP((40, 40), 1, "relu").
    """

    hidden: Sequence[int] = (64, 64)
    out: int = 1
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"MLP(activation={self.activation!r}): expected one of "
                             f"{', '.join(ACTIVATIONS)}")
        check_widths(self, hidden=self.hidden, out=(self.out,))
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)

"""Networks from the paper, as flax modules with a pure `apply`."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


class MLP(nn.Module):
    """Fully connected network: hidden layers with `activation`, then a linear output.

    The paper's sine network is MLP((64, 64), 1, "tanh"); MAML's is MLP((40, 40), 1, "relu").
    """

    hidden: Sequence[int] = (64, 64)
    out: int = 1
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)

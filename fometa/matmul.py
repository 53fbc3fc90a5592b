"""Matrix products whose derivatives, of every order, stay in layouts XLA:CPU runs fast.

XLA:CPU (jax 0.10) hands a dot to YNNPACK, its fast multithreaded path, only when the left
operand contracts over its last axis. Reverse-mode autodiff of `a @ b` produces the weight
gradient `a.T @ g`, which contracts the left operand over its first axis: XLA then uses
Eigen's slower dot, after transposing `g` inside the fusion that produces it.
In a patch convolution (`fometa.convnets.patch_conv`) that is every weight gradient.

The three forms below route each other's cotangents, so first-, second- (MAML) and
higher-order derivatives are all made of these same three forms:

    matmul(a, b)    = a @ b      [M, K] x [K, N] -> [M, N]
    matmul_nt(a, b) = a @ b.T    [M, N] x [K, N] -> [M, K]
    matmul_tn(a, b) = a.T @ b    [M, K] x [M, N] -> [K, N]

`matmul_tn` materialises `a.T` (an optimisation barrier keeps XLA from folding the
transpose back into the dot) and multiplies in the fast layout; transposing `g` instead
(the smaller operand in a convolution) measured slower. All operands are 2-D; `vmap` adds
batch axes. The values are plain matrix products: only the layouts XLA sees differ. What
it buys is measured in `benchmarks/README.md` ("Where the CPU time went").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check(a: jax.Array, b: jax.Array, name: str) -> None:
    if jnp.ndim(a) != 2 or jnp.ndim(b) != 2:
        raise ValueError(f"{name} takes 2-D operands (vmap adds batch axes); "
                         f"got shapes {jnp.shape(a)} and {jnp.shape(b)}")


def _transposed(x: jax.Array) -> jax.Array:
    return jax.lax.optimization_barrier(x.T)


@jax.custom_vjp
def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """`a @ b` for a [M, K], b [K, N] -> [M, N]."""
    _check(a, b, "matmul")
    return a @ b


@jax.custom_vjp
def matmul_nt(a: jax.Array, b: jax.Array) -> jax.Array:
    """`a @ b.T` for a [M, N], b [K, N] -> [M, K]."""
    _check(a, b, "matmul_nt")
    return a @ b.T


@jax.custom_vjp
def matmul_tn(a: jax.Array, b: jax.Array) -> jax.Array:
    """`a.T @ b` for a [M, K], b [M, N] -> [K, N]."""
    _check(a, b, "matmul_tn")
    return _transposed(a) @ b


# Cotangents: for c = a @ b, da = g @ b.T and db = a.T @ g; likewise for the other two.
matmul.defvjp(lambda a, b: (matmul(a, b), (a, b)),
              lambda res, g: (matmul_nt(g, res[1]), matmul_tn(res[0], g)))
matmul_nt.defvjp(lambda a, b: (matmul_nt(a, b), (a, b)),
                 lambda res, g: (matmul(g, res[1]), matmul_tn(g, res[0])))
matmul_tn.defvjp(lambda a, b: (matmul_tn(a, b), (a, b)),
                 lambda res, g: (matmul_nt(res[1], g), matmul(res[0], g)))

"""fometa.matmul: the three product forms against plain products, to third order.

The reference is `jnp.matmul` and JAX's own differentiation of it, in float64. The layout
test reads XLA:CPU's optimised HLO: it checks the reason the module exists (the plain
weight gradient is a dot outside XLA's fast YNNPACK fusions) and that the custom forms
leave none there, to second order and under vmap.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fometa.matmul import matmul, matmul_nt, matmul_tn

FORMS = {
    # name: (function, reference, shapes of a and b)
    "matmul": (matmul, lambda a, b: a @ b, ((7, 5), (5, 3))),
    "matmul_nt": (matmul_nt, lambda a, b: a @ b.T, ((7, 3), (5, 3))),
    "matmul_tn": (matmul_tn, lambda a, b: a.T @ b, ((7, 5), (7, 3))),
}


def operands(shapes, seed=0, lead=()):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.standard_normal((*lead, *s))) for s in shapes)


def loss(product, c):
    """A nonlinear scalar of the product, so that higher derivatives are not trivially 0."""
    return lambda a, b: jnp.sum(jnp.sin(product(a, b)) * c)


def derivatives(f, a, b):
    """First, second (gradient of a gradient norm) and third order derivatives of f."""
    g1 = jax.grad(f, (0, 1))
    g2 = jax.grad(lambda a, b: sum(jnp.sum(g ** 2) for g in g1(a, b)), (0, 1))
    g3 = jax.grad(lambda a, b: sum(jnp.sum(jnp.cos(g)) for g in g2(a, b)), (0, 1))
    return f(a, b), g1(a, b), g2(a, b), g3(a, b)


@pytest.mark.parametrize("name", sorted(FORMS))
@pytest.mark.parametrize("variant", ["eager", "jit"])
def test_values_and_derivatives_match_plain_products(name, variant):
    fn, ref, shapes = FORMS[name]
    with jax.enable_x64(True):
        a, b = operands(shapes)
        c = operands([ref(a, b).shape], seed=1)[0]
        out = fn(a, b)
        assert out.shape == ref(a, b).shape and out.dtype == jnp.float64
        np.testing.assert_allclose(out, ref(a, b), rtol=1e-13, atol=1e-13)
        run = jax.jit(derivatives, static_argnums=0) if variant == "jit" else derivatives
        got, want = run(loss(fn, c), a, b), run(loss(ref, c), a, b)
        assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
        for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_vmap_over_a_task_axis_equals_a_loop(name):
    fn, ref, shapes = FORMS[name]
    with jax.enable_x64(True):
        a, b = operands(shapes, lead=(4,))
        c = operands([ref(a[0], b[0]).shape], seed=1)[0]
        second = lambda f: jax.grad(lambda a, b: jnp.sum(jax.grad(f, 1)(a, b) ** 2), (0, 1))
        got = jax.vmap(second(loss(fn, c)))(a, b)
        for t in range(4):
            want = second(loss(ref, c))(a[t], b[t])
            for x, y in zip(got, want):
                np.testing.assert_allclose(x[t], y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_float32_and_bfloat16_keep_their_dtype(name):
    fn, ref, shapes = FORMS[name]
    for dtype in (jnp.float32, jnp.bfloat16):
        a, b = (x.astype(dtype) for x in operands(shapes))
        out = fn(a, b)
        assert out.dtype == dtype
        ga, gb = jax.grad(lambda a, b: jnp.sum(fn(a, b).astype(jnp.float32)), (0, 1))(a, b)
        assert ga.dtype == dtype and gb.dtype == dtype
        np.testing.assert_allclose(np.asarray(out, np.float32),
                                   np.asarray(ref(a.astype(jnp.float32), b.astype(jnp.float32))),
                                   rtol=0.05, atol=0.05)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_rejects_operands_that_are_not_matrices(name):
    fn, _, shapes = FORMS[name]
    a, b = operands(shapes)
    with pytest.raises(ValueError, match=f"{name} takes 2-D operands"):
        fn(a[None], b)


def eigen_dots(hlo: str) -> int:
    """Dots in XLA:CPU's optimised HLO that are not inside a YNNPACK (kCustom) fusion."""
    fast = set(re.findall(r"kind=kCustom, calls=%([\w.\-]+)", hlo))
    count, current = 0, None
    for line in hlo.splitlines():
        head = re.match(r"(?:ENTRY )?%([\w.\-]+) \(", line)
        if head:
            current = head.group(1)
        elif " dot(" in line and current not in fast:
            count += 1
    return count


def test_gradients_stay_on_xla_cpus_fast_dot_path():
    if jax.default_backend() != "cpu":
        pytest.skip("a property of XLA:CPU")
    a, b = operands(((490, 576), (576, 64)))
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    c = jnp.ones((490, 64), jnp.float32)

    def hlo(product, order, lead=None):
        first = jax.grad(loss(product, c), (0, 1))
        g = first if order == 1 else jax.grad(
            lambda a, b: jnp.sum(first(a, b)[1] ** 2), (0, 1))
        args = (a, b) if lead is None else (jnp.stack([a] * lead), jnp.stack([b] * lead))
        return jax.jit(g if lead is None else jax.vmap(g)).lower(*args).compile().as_text()

    plain = hlo(lambda a, b: a @ b, 1)
    if "kCustom" not in plain or eigen_dots(plain) == 0:
        pytest.skip("this XLA:CPU runs the plain weight gradient on its fast path: "
                    "fometa.matmul is no longer needed")
    for order in (1, 2):
        for lead in (None, 3):
            assert eigen_dots(hlo(matmul, order, lead)) == 0, (order, lead)

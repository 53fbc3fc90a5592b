"""The paper's few-shot classification networks, as flax modules with a pure `apply`.

As in the paper's code (openai/supervised-reptile, models.py), batch norm always
normalises with the current batch's statistics (TF's `training=True`) and keeps no
running averages, so `apply` needs no mutable collections. Initialisers follow TF's
defaults: Glorot-uniform kernels, zero biases.

`conv` picks the convolution implementation; both give the same parameter tree:
  "xla":   `jax.lax.conv_general_dilated`.
  "patch": the k*k strided taps of the SAME-padded input, concatenated on the channel
           axis, times the kernel reshaped to [k*k*Cin, Cout] (one matmul). On the CPU a
           stride-1 layer with at least ROW_TAPS_MIN_CHANNELS input channels takes only the
           k horizontal taps instead, times the kernel as [k*Cin, k*Cout], and adds the k
           vertically shifted partial outputs (`row_tap_conv`): 1/k of the patches (a third
           for 3x3) to build, fold back and transpose.
  "auto":  "patch" on CPU and GPU, "xla" elsewhere (TPU, unmeasured). Under vmap with
           per-task weights the convolutions become grouped ones, and inside a
           `lax.scan` body (the inner loop) XLA:CPU runs their gradients through its
           unoptimised generic loop ("Falling back to unoptimized convolution" at VLOG
           2): meta-steps are 5-10x slower than with the matmul form (benchmarks/conv.py).
           On an H100 the matmul form was also faster for the Omniglot network: Reptile
           1.49 vs 4.40 ms and FOMAML 0.69 vs 5.48 ms per meta-iteration
           (benchmarks/preset_speed.py; grouped-convolution gradients are slow on GPU too).
"""

from __future__ import annotations

import functools
import operator
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from fometa.matmul import matmul
from fometa.models import check_input, check_widths

ConvImpl = Literal["auto", "xla", "patch"]
CONV_IMPLS: tuple[str, ...] = ("auto", "xla", "patch")

# TF's tf.layers defaults.
kernel_init = nn.initializers.glorot_uniform()
bias_init = nn.initializers.zeros
BN_EPSILON = 1e-3


def resolve_conv(conv: str) -> str:
    """"xla" or "patch" for `conv`; "auto" is "patch" on the CPU and GPU backends, else "xla"."""
    if conv not in CONV_IMPLS:
        raise ValueError(f"unknown conv {conv!r}; expected one of {CONV_IMPLS}")
    if conv == "auto":
        return "patch" if jax.default_backend() in ("cpu", "gpu") else "xla"
    return conv


def same_padding(size: int, window: int, stride: int) -> tuple[int, tuple[int, int]]:
    """TF/XLA "SAME": output size ceil(size / stride) and the (low, high) padding for it."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, (total // 2, total - total // 2)


def xla_conv(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """SAME convolution, x [N, H, W, Cin], kernel [kh, kw, Cin, Cout] -> [N, H', W', Cout]."""
    return jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (stride, stride), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def extract_patches(x: jax.Array, kh: int, kw: int, stride: int = 1) -> jax.Array:
    """SAME patches: [N, H, W, C] -> [N, H', W', kh*kw*C], ordered (tap row, tap col, channel)."""
    n, h, w, c = x.shape
    ho, pad_h = same_padding(h, kh, stride)
    wo, pad_w = same_padding(w, kw, stride)
    xp = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    taps = [jax.lax.slice(xp, (0, i, j, 0),
                          (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
                          (1, stride, stride, 1))
            for i in range(kh) for j in range(kw)]
    return jnp.concatenate(taps, axis=-1)


def _product():
    """On the CPU `fometa.matmul.matmul`, whose gradients of every order keep the layouts
    XLA:CPU's fast dot path takes (the plain product's weight gradient does not)."""
    return matmul if jax.default_backend() == "cpu" else jnp.matmul


def _shifted(z: jax.Array, axis: int, d: int) -> jax.Array:
    """out[..., r, ...] = z[..., r + d, ...] along `axis`, zero where r + d is outside."""
    size = z.shape[axis]
    lo, hi = min(max(d, 0), size), min(max(size + d, 0), size)
    before = min(max(-d, 0), size)
    pad = [(0, 0)] * z.ndim
    pad[axis] = (before, size - before - (hi - lo))
    return jnp.pad(jax.lax.slice_in_dim(z, lo, hi, axis=axis), pad)


def row_tap_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 `xla_conv` from horizontal taps: x [N, H, W, Cin] -> [N, H, W, Cout].

    The kw horizontal taps of the input (padded along W), concatenated on the channel axis
    ([N, H, W, kw*Cin]), times the kernel as [kw*Cin, kh*Cout] give z [N, H, W, kh, Cout]:
    z[:, r, :, i] is input row r's contribution, through kernel row i, to output row
    r - i + pad_top. Shifted back by those offsets and added, they are the convolution:
    the same multiply-adds as `patch_conv`, from patches kh times smaller.
    """
    kh, kw, cin, cout = kernel.shape
    n, h, w, c = x.shape
    _, (pad_h, _) = same_padding(h, kh, 1)
    taps = extract_patches(x, 1, kw)  # [N, H, W, kw*Cin]: a 1 x kw window has no row padding
    wk = kernel.astype(x.dtype).transpose(1, 2, 0, 3).reshape(kw * cin, kh * cout)
    z = _product()(taps.reshape(n * h * w, kw * c), wk).reshape(n, h, w, kh, cout)
    # Added in at least float32. In bfloat16 each partial output is still rounded by its
    # product, so the sum is a little less accurate than `patch_conv`'s single product
    # (1.16x its error in tests/test_convnets.py; 1.27x with the sum in bfloat16).
    acc = jnp.promote_types(z.dtype, jnp.float32)
    parts = [_shifted(z[:, :, :, i].astype(acc), 1, i - pad_h) for i in range(kh)]
    return functools.reduce(operator.add, parts).astype(x.dtype)


# Row taps from this many input channels on the CPU. Measured on Mini-ImageNet: its
# 32-channel layers faster with them, its 3-channel first layer slower (benchmarks/README.md,
# "Mini-ImageNet: row taps"); where between 3 and 32 they start to pay is unmeasured. With
# stride 2 they would compute every row, not every other.
ROW_TAPS_MIN_CHANNELS = 32


def takes_row_taps(stride: int, cin: int) -> bool:
    """Whether a layer's shape takes row taps where they are used (on the CPU): stride 1
    and at least ROW_TAPS_MIN_CHANNELS input channels."""
    return stride == 1 and cin >= ROW_TAPS_MIN_CHANNELS


def patch_conv(x: jax.Array, kernel: jax.Array, stride: int = 1, rows: bool | None = None
               ) -> jax.Array:
    """`xla_conv` as patch extraction and one matmul with the kernel as [kh*kw*Cin, Cout].

    `rows=True` takes `row_tap_conv`'s horizontal taps instead (stride 1 only); None: on
    the CPU where `takes_row_taps`.
    """
    kh, kw, cin, cout = kernel.shape
    if rows is None:
        rows = takes_row_taps(stride, cin) and jax.default_backend() == "cpu"
    if rows:
        if stride != 1:
            raise ValueError(f"row taps take stride 1; got stride {stride}")
        return row_tap_conv(x, kernel)
    patches = extract_patches(x, kh, kw, stride)
    n, ho, wo, k = patches.shape
    w = kernel.astype(x.dtype).reshape(kh * kw * cin, cout)
    return _product()(patches.reshape(n * ho * wo, k), w).reshape(n, ho, wo, cout)


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1, conv: ConvImpl = "auto"
           ) -> jax.Array:
    """SAME convolution with the implementation `conv` selects (see module docstring)."""
    if resolve_conv(conv) == "patch":
        return patch_conv(x, kernel, stride)
    return xla_conv(x, kernel, stride)


def max_pool(x: jax.Array, window: int = 2, stride: int = 2) -> jax.Array:
    """SAME max-pooling, [N, H, W, C] -> [N, ceil(H/stride), ceil(W/stride), C].

    The gradient goes to one maximum per window, the first in row-major order (as TF's
    MaxPoolGrad). 2x2 windows of stride 2 (the paper's): a tournament of `where`s between
    the four strided views, whose gradient is elementwise. `lax.reduce_window` (other
    shapes) differentiates into select-and-scatter, which XLA:CPU runs as an iota and a
    scatter: 17% of a Mini-ImageNet FOMAML step (benchmarks/README.md). Not jnp.max over
    reshaped windows: that gradient locates the maximum by bitwise equality with the
    forward result, and in the jitted Mini-ImageNet network gradient (XLA:CPU, jax 0.10.2)
    it came out wrong; the tournament's masks come from the comparisons themselves, so
    exactly one element of every window receives its gradient.
    """
    _, h, w, _ = x.shape
    _, pad_h = same_padding(h, window, stride)
    _, pad_w = same_padding(w, window, stride)
    pads = ((0, 0), pad_h, pad_w, (0, 0))
    if (window, stride) != (2, 2):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                                     (1, stride, stride, 1), pads)
    if pad_h != (0, 0) or pad_w != (0, 0):  # odd sizes: -inf padding never wins
        x = jnp.pad(x, pads, constant_values=-jnp.inf)
    first = lambda p, q: jnp.where(p >= q, p, q)  # ties: the earlier one
    top = first(x[:, 0::2, 0::2], x[:, 0::2, 1::2])
    bottom = first(x[:, 1::2, 0::2], x[:, 1::2, 1::2])
    return first(top, bottom)


class Conv(nn.Module):
    """SAME 2-D convolution plus bias: [N, H, W, Cin] -> [N, ceil(H/s), ceil(W/s), features].

    Params: kernel [k, k, Cin, features] (Glorot uniform), bias [features] (zeros).
    `add_bias=False` declares the bias but leaves it out of the output: for a conv that
    feeds batch norm, which subtracts the batch mean, so that the bias changes no output
    and has a zero gradient. The paper's networks have that bias (TF's default); leaving
    its addition out saves an elementwise pass and a gradient reduction per layer and
    inner step.
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    conv: ConvImpl = "auto"
    add_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", kernel_init, (k, k, x.shape[-1], self.features))
        bias = self.param("bias", bias_init, (self.features,))
        y = conv2d(x, kernel, self.stride, self.conv)
        return y + bias.astype(x.dtype) if self.add_bias else y


class BatchNorm(nn.Module):
    """Batch norm with the current batch's statistics (over all axes but the last), always.

    No running averages: a prediction depends on the rest of its batch (transductive),
    as in the paper's code. Params: scale [C] (ones), bias [C] (zeros).
    """

    epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        # Statistics in at least float32, so bfloat16 inputs keep their precision here.
        xs = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        axes = tuple(range(x.ndim - 1))
        mean = xs.mean(axes)
        var = jnp.square(xs - mean).mean(axes)
        # (x - mean) * inv + bias as one multiply-add per element with per-channel factors:
        # fewer full-size passes forward and backward than the textbook order.
        inv = jax.lax.rsqrt(var + self.epsilon) * scale
        return (xs * inv + (bias - mean * inv)).astype(x.dtype)


def _conv_blocks(x: jax.Array, filters: int, stride: int, conv: ConvImpl, pool: bool
                 ) -> jax.Array:
    """The paper's 4 x (3x3 conv -> batch norm [-> 2x2 max-pool] -> ReLU), inside a compact
    module: submodules "conv{i}" and "norm{i}". The conv biases are declared but not added
    (`Conv.add_bias`): batch norm cancels them."""
    for i in range(4):
        x = Conv(filters, 3, stride, conv, add_bias=False, name=f"conv{i}")(x)
        x = BatchNorm(name=f"norm{i}")(x)
        x = nn.relu(max_pool(x, 2, 2) if pool else x)
    return x


def _logits(x: jax.Array, num_classes: int) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(num_classes, dtype=x.dtype, kernel_init=kernel_init, bias_init=bias_init,
                    name="logits")(x)


class OmniglotCNN(nn.Module):
    """The paper's Omniglot network: [N, 28, 28, 1] -> logits [N, num_classes].

    4 x (3x3 conv, 64 filters, stride 2, SAME -> batch norm -> ReLU), flatten (2*2*64), dense.
    """

    num_classes: int
    conv: ConvImpl = "auto"
    filters: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_widths(self, num_classes=(self.num_classes,), filters=(self.filters,))
        check_input(self, x, 4, "[N, H, W, C]")
        x = _conv_blocks(x, self.filters, stride=2, conv=self.conv, pool=False)
        return _logits(x, self.num_classes)


class MiniImageNetCNN(nn.Module):
    """The paper's Mini-ImageNet network: [N, 84, 84, 3] -> logits [N, num_classes].

    4 x (3x3 conv, 32 filters, stride 1, SAME -> batch norm -> 2x2 max-pool stride 2,
    SAME -> ReLU), flatten (6*6*32), dense.
    """

    num_classes: int
    conv: ConvImpl = "auto"
    filters: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_widths(self, num_classes=(self.num_classes,), filters=(self.filters,))
        check_input(self, x, 4, "[N, H, W, C]")
        x = _conv_blocks(x, self.filters, stride=1, conv=self.conv, pool=True)
        return _logits(x, self.num_classes)

"""One-off: MAML's `speed.py` Omniglot step with remat (fometa train's default there), as
is and with a remat policy that saves every convolution's output (`checkpoint_name` on
`patch_conv`'s result, `save_only_these_names`), so that the backward pass does not
recompute the forward products; compiled in one process, timed alternately (4 rounds of 5).

    python remat_policy.py
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import jax  # noqa: E402
import fometa.convnets as cn  # noqa: E402
import speed  # noqa: E402
from jax.ad_checkpoint import checkpoint_name  # noqa: E402

data = speed.make_data("omniglot-5w1s")
base, cs0, _ = speed.fometa_step("omniglot-5w1s", "maml", data, unroll=1, conv="auto", remat=True)
orig_patch, orig_ckpt = cn.patch_conv, jax.checkpoint
cn.patch_conv = lambda *a, **k: checkpoint_name(orig_patch(*a, **k), "conv_out")
policy = jax.checkpoint_policies.save_only_these_names("conv_out")
jax.checkpoint = lambda f, **k: orig_ckpt(f, policy=policy, **k)
saved, cs1, _ = speed.fometa_step("omniglot-5w1s", "maml", data, unroll=1, conv="auto", remat=True)
jax.checkpoint = orig_ckpt
print("compile", round(cs0, 1), round(cs1, 1))
times = {"remat": [], "remat+saved conv outputs": []}
for call in (base, saved):
    call(); call()
for _ in range(4):
    for name, call in (("remat", base), ("remat+saved conv outputs", saved)):
        for _ in range(5):
            t = time.perf_counter(); call(); times[name].append(time.perf_counter() - t)
for name, ts in times.items():
    print(name, f"{1e3 * statistics.median(ts):.1f} ms")

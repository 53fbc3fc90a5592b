"""One-off: `fometa.matmul.matmul_tn` (a.T @ b) as now (a.T materialised, then the fast
layout) against (b.T materialised @ a).T (the smaller operand of a convolution's weight
gradient transposed); speed.py's Omniglot step, both compiled in one process, timed
alternately (6 rounds of 5).

    python tn_layout.py [maml|fomaml|reptile] [remat|plain] [workload]
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import fometa.matmul as fm  # noqa: E402
import speed  # noqa: E402

alg = sys.argv[1] if len(sys.argv) > 1 else "maml"
remat = (sys.argv[2] if len(sys.argv) > 2 else "remat") == "remat"
wl = sys.argv[3] if len(sys.argv) > 3 else "omniglot-5w1s"
orig = fm.matmul_tn.fun


def b_transposed(a, b):
    return (fm._transposed(b) @ a).T


data = speed.make_data(wl)
base, cs0, _ = speed.fometa_step(wl, alg, data, unroll=1, conv="auto", remat=remat)
fm.matmul_tn.fun = b_transposed
new, cs1, _ = speed.fometa_step(wl, alg, data, unroll=1, conv="auto", remat=remat)
fm.matmul_tn.fun = orig
print(wl, alg, "remat" if remat else "plain", "compile", round(cs0, 1), round(cs1, 1))
times = {"a.T materialised": [], "b.T materialised": []}
for call in (base, new):
    call(); call()
for _ in range(6):
    for name, call in zip(times, (base, new)):
        for _ in range(5):
            t = time.perf_counter(); call(); times[name].append(time.perf_counter() - t)
for name, ts in times.items():
    print(name, f"{1e3 * statistics.median(ts):.1f} ms")

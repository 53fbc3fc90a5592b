"""Row taps against k*k patches: a `speed.py` meta-step compiled with each, timed alternately.

    python benchmarks/conv_taps.py --workload miniimagenet-5w1s --algorithm fomaml \\
        [--iters 5] [--remat] [--json]

`fometa.convnets.patch_conv` builds, on the CPU for a stride-1 layer with at least
`ROW_TAPS_MIN_CHANNELS` input channels (`takes_row_taps`), only the k horizontal taps
(`row_tap_conv`) instead of all k*k (`extract_patches`). This script compiles the same
meta-step twice in one process, once with that rule on any backend ("rows": fometa's
default on the CPU; on a GPU it measures what the rule would give there) and once with
every layer on k*k patches ("patches": fometa's default on a GPU), then times them in
alternation, one step each per round after one untimed step each; ms per meta-step, median
over `--iters` rounds. The last line printed (with --json) is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import jax

from fometa import convnets

import speed


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Omniglot's network has stride-2 layers only, which never take row taps.
    parser.add_argument("--workload", choices=("miniimagenet-5w1s",), default="miniimagenet-5w1s")
    parser.add_argument("--algorithm", choices=("maml", "fomaml", "reptile"), default="fomaml")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--remat", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error(f"--iters takes a count of at least 1; got {args.iters}")

    data = speed.make_data(args.workload)
    default = convnets.patch_conv

    def rule(x, kernel, stride=1):  # the CPU's rule, on any backend
        return default(x, kernel, stride, rows=convnets.takes_row_taps(stride, kernel.shape[2]))

    calls, compile_s = {}, {}
    try:
        for name, conv in (("rows", rule), ("patches", functools.partial(default, rows=False))):
            convnets.patch_conv = conv  # read at trace time by convnets.conv2d
            call, compile_s[name], _ = speed.fometa_step(args.workload, args.algorithm, data,
                                                         1, "patch", remat=args.remat)
            call()
            calls[name] = call
    finally:
        convnets.patch_conv = default
    times = {name: [] for name in calls}
    for _ in range(args.iters):
        for name, call in calls.items():
            call()  # untimed: the other program's threads settle
            t0 = time.perf_counter()
            call()
            times[name].append(1000 * (time.perf_counter() - t0))
    ms = {name: statistics.median(t) for name, t in times.items()}
    result = {"workload": args.workload, "device": str(jax.devices()[0]),
              "algorithm": args.algorithm, "remat": args.remat, "iters": args.iters,
              "ms_per_meta_step": ms, "compile_s": compile_s,
              "patches_over_rows": ms["patches"] / ms["rows"]}
    print(f"{args.workload} {args.algorithm}: rows {ms['rows']:.1f} ms, patches "
          f"{ms['patches']:.1f} ms ({result['patches_over_rows']:.2f}x); compile "
          f"{compile_s['rows']:.1f} vs {compile_s['patches']:.1f} s")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

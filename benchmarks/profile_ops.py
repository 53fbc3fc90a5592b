"""Where a meta-step's time goes, per HLO op: a speed.py workload or a preset, under jax.profiler.

    python benchmarks/profile_ops.py --workload miniimagenet-5w1s --algorithm fomaml \\
        [--iters 5] [--top 15] [--remat] [--json]
    python benchmarks/profile_ops.py --preset reptile-omniglot-5w1s [--iters 20] [--top 15]

Runs `benchmarks/speed.py`'s jitted meta-step `--iters` times inside `jax.profiler.trace`
(after two untimed calls), or with `--preset` the preset's compiled training chunk of
`--iters` meta-iterations (`preset_speed.compiled_chunk`, as `fometa train` runs it) once,
and reads the Perfetto trace (XLA:CPU records every thunk under its
HLO instruction name) and prints, per meta-step, the milliseconds of each kind of op (the
instruction name before its first '.': dot, fusion, reduce-window (max-pool),
select-and-scatter (its gradient), copy, ...) and of the `--top` costliest instructions.
Thunks of the two cores overlap, so the kinds add up to more than the wall time; the
shares say where the work is. It also prints for how long 0, 1 and 2 or more operations
ran at once (per meta-step, from the first operation's start to the last one's end; an
operation is one thunk, though YNNPACK's dots spread over the cores inside theirs).
With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import jax

from fometa.run import PRESETS, resolve
from fometa.run.problems import uses_remat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import preset_speed  # noqa: E402  (a preset's compiled chunk, shared with preset_speed.py)
import speed  # noqa: E402  (the workload and its step, shared with speed.py)


def op_events(trace_dir: Path) -> list[tuple[str, float, float]]:
    """(HLO instruction name, start, duration) in microseconds of the trace's complete
    events on XLA's threads."""
    [path] = list(trace_dir.rglob("*.trace.json.gz")) or [None]
    if path is None:
        raise SystemExit(f"profile_ops: no Perfetto trace written under {trace_dir}")
    events = json.loads(gzip.decompress(path.read_bytes()))
    events = events["traceEvents"] if isinstance(events, dict) else events
    threads = {(e.get("pid"), e.get("tid")): e.get("args", {}).get("name", "")
               for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}
    out = []
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        thread = threads.get((e.get("pid"), e.get("tid")), "")
        if "python" in thread.lower():  # the host's Python frames, not XLA's thunks
            continue
        out.append((e["name"], float(e["ts"]), float(e["dur"])))
    return out


def is_op(name: str) -> bool:
    """Thunk names are HLO instructions; anything else (the executable's own span,
    host-side events) is left out by keeping names that look like instructions."""
    return "." in name or name in ("dot", "copy", "fusion")


def running(events: list[tuple[str, float, float]]) -> dict[str, float]:
    """Microseconds, from the first operation's start to the last one's end, during which
    0, 1 and 2 or more operations ran at once (thunks overlap only across threads)."""
    edges = sorted([(t, 1) for _, t, _ in events] + [(t + d, -1) for _, t, d in events])
    spans = [0.0, 0.0, 0.0]  # 0, 1, 2 or more
    count, last = 0, None
    for t, step in edges:
        if last is not None:
            spans[min(count, 2)] += t - last
        count, last = count + step, t
    return dict(zip(("0", "1", "2+"), spans))


def kind(name: str) -> str:
    return name.split(".")[0].split(":")[0]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(speed.WORKLOADS), default="omniglot-5w1s")
    parser.add_argument("--algorithm", choices=tuple(speed.VARIANTS), default="fomaml")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--preset", choices=list(PRESETS), metavar="NAME",
                        help="profile this preset's training chunk instead of a workload")
    parser.add_argument("--remat", action=argparse.BooleanOptionalAction,
                        help="remat on or off (default: off for a workload, the preset's "
                             "own for --preset)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.preset:
        cfg = resolve(preset=args.preset, remat=args.remat)
        remat = uses_remat(cfg, jax.default_backend())
        call, compile_s, *_ = preset_speed.compiled_chunk(cfg, args.iters)
        calls = 1  # one chunk of --iters meta-iterations
        args.workload, args.algorithm = args.preset, cfg.algorithm
    else:
        data = speed.make_data(args.workload)
        call, compile_s, _ = speed.fometa_step(args.workload, args.algorithm, data, unroll=1,
                                               conv="auto", remat=bool(args.remat))
        remat = bool(args.remat)
        calls = args.iters
    call(), call()
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            t0 = time.perf_counter()  # the calls only: not starting or writing the trace
            for _ in range(calls):
                call()
            wall_ms = 1e3 * (time.perf_counter() - t0) / args.iters
        events = [e for e in op_events(Path(tmp)) if is_op(e[0])]
    totals: dict[str, float] = collections.Counter()
    for name, _, dur in events:
        totals[name] += dur
    ops = {n: us / 1e3 / args.iters for n, us in totals.items()}
    at_once = {k: us / 1e3 / args.iters for k, us in running(events).items()}
    kinds: dict[str, float] = collections.Counter()
    for name, ms in ops.items():
        kinds[kind(name)] += ms
    busy = sum(kinds.values())
    print(f"{args.workload} {args.algorithm}: {wall_ms:.1f} ms per meta-step under the "
          f"profiler, {busy:.1f} ms of op time (both cores), compile {compile_s:.1f} s")
    print("  operations running at once: " + ", ".join(
        f"{k} for {ms:.1f} ms" for k, ms in at_once.items()))
    for k, ms in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<24} {ms:8.2f} ms  {100 * ms / busy:5.1f}%")
    print(f"  top {args.top} instructions:")
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:args.top]
    for name, ms in top:
        print(f"    {name:<40} {ms:8.2f} ms  {100 * ms / busy:5.1f}%")
    out = {"workload": args.workload, "algorithm": args.algorithm, "remat": remat,
           "wall_ms_per_meta_step": wall_ms, "op_ms_per_meta_step": busy,
           "kinds_ms": dict(kinds), "top_ms": dict(top), "iters": args.iters,
           "ops_at_once_ms": at_once,
           "jax": jax.__version__, "device": str(jax.devices()[0])}
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

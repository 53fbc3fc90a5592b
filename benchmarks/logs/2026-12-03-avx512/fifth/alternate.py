"""The end shared by three of the fifth session's one-off scripts (plain_map.py,
channels_first.py, unrolled_groups.py): each compiled step called twice untimed, then all
timed alternately by `speed.time_alternately` (30 calls each in blocks of 5), medians
printed. The scripts put benchmarks/ on sys.path before importing it."""
import statistics

import speed


def print_medians(steps: dict) -> None:
    """`steps`: name -> `speed.fometa_step`'s (call, compile seconds, _)."""
    for call, _, _ in steps.values():
        call(); call()
    times = speed.time_alternately({name: s[0] for name, s in steps.items()}, iters=30, block=5)
    for name, ts in times.items():
        print(f"{name}: {statistics.median(ts):.1f} ms")

"""One-off: the table of benchmarks/README.md's "... and Omniglot's larger meta-batches",
from this folder's tasks_at_once_*.txt (tasks_at_once.py's lines).

    python table.py > table.md
"""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repository root
from fometa.run import resolve  # noqa: E402
from fometa.run.problems import images_per_step  # noqa: E402

here = Path(__file__).resolve().parent
ms = {}
for name in ("remat", "boundary", "5way", "rest"):
    for line in (here / f"tasks_at_once_{name}.txt").read_text().splitlines():
        m = re.match(r"(\S+) tasks at once\s+(\S+) of \d+:\s+([\d.]+) ms", line)
        if m:
            ms.setdefault(m.group(1), {})[m.group(2)] = float(m.group(3))
rows = sorted(ms, key=lambda p: (resolve(preset=p).dataset, images_per_step(resolve(preset=p)), p))
for p in rows:
    one, all_ = ms[p]["1"], ms[p]["all"]
    cfg = resolve(preset=p)
    print(f"| {p} | {images_per_step(cfg)} ({cfg.meta_batch} x "
          f"{images_per_step(cfg) // cfg.meta_batch}) | {one:.1f} | {all_:.1f} | {all_ / one:.2f}x |")

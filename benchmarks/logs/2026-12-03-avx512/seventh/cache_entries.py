"""Entries of a JAX compilation cache folder: module name, compile seconds (whole, as JAX
stores them), size; totals by module name."""
import collections, sys
from pathlib import Path
from jax._src import compilation_cache as cc
rows = []
for p in Path(sys.argv[1]).glob("*-cache"):
    data = cc.decompress_executable(p.read_bytes())
    _, secs = cc.extract_executable_and_time(data)
    name = p.name.rsplit("-", 2)[0]
    rows.append((secs, name, p.stat().st_size, p.stat().st_mtime))
tot = collections.Counter(); cnt = collections.Counter()
for s, n, _, _ in rows:
    tot[n] += s; cnt[n] += 1
print(f"{len(rows)} entries, {sum(r[0] for r in rows)} s of compile (whole seconds)")
for n, s in tot.most_common(): print(f"{s:5d} s {cnt[n]:4d}  {n}")

"""One-off: XLA's per-fusion emitter time (FusionCompiler::Compile, from a Perfetto trace) of a
preset's training loop, grouped by where in the program each fusion comes from (its op_name)."""
import collections, gzip, json, re, sys, tempfile
from pathlib import Path
import jax
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "seventh"))
from built import built

preset, depth = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4
cfg, run, state, mesh, chunks, args = built(preset)
lowered = chunks._runner.lower(*args)
d = tempfile.mkdtemp()
with jax.profiler.trace(d, create_perfetto_trace=True):
    compiled = lowered.compile()
where = {}
for line in compiled.as_text().splitlines():
    m = re.match(r"\s*(?:ROOT )?%?([\w.-]+) = .*?(?:fusion|sort|scatter|compare|multiply)\(", line)
    if m:
        o = re.search(r'op_name="([^"]+)"', line)
        where[m.group(1)] = o.group(1) if o else "?"
[path] = list(Path(d).rglob("*.trace.json.gz"))
events = json.load(gzip.open(path))
events = events["traceEvents"] if isinstance(events, dict) else events
tot, cnt = collections.Counter(), collections.Counter()
unmatched = 0
for e in events:
    if e.get("ph") == "X" and e["name"] == "FusionCompiler::Compile":
        mod = e["args"]["module"]
        name = re.sub(r"^__compute_module_", "", re.sub(r"_kernel_module$", "", mod))
        op = where.get(name)
        if op is None:
            unmatched += 1; op = "?"
        parts = op.split("/")
        group = "/".join(p for p in parts[:depth])
        if "threefry" in op or "_shuffle" in op or "_randint" in op or "random" in op or "task" in op:
            group = "SAMPLER " + group
        tot[group] += e["dur"] / 1e6; cnt[group] += 1
print(f"{preset}: {sum(cnt.values())} fusions, {sum(tot.values()):.2f} s emitter time, {unmatched} unmatched")
for g, s in tot.most_common(30):
    print(f"{s:7.2f} s {cnt[g]:5d}  {g[:120]}")
samp = sum(v for k, v in tot.items() if k.startswith("SAMPLER"))
print(f"sampler share: {samp:.2f} s of {sum(tot.values()):.2f} s")

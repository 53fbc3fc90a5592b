"""One-off: where XLA's compile of a preset's training loop goes, and what it compiles.

    python compile_anatomy.py PRESET

Lowers the loop (random images of the dataset's shapes, as compile_times.py), compiles it
under `jax.profiler`, and prints the profile's spans by total seconds (XLA's phases, summed
over threads), then the compiled program's fusions per computation (loop bodies) and the
fusion compiler's time per kind of fusion.
"""
import collections
import gzip
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import jax  # noqa: E402

from fometa.run import resolve, setup  # noqa: E402
from fometa.run.training import Chunks, initial_state  # noqa: E402
from fometa.sharding import task_mesh  # noqa: E402
from preset_speed import synthetic_problem  # noqa: E402

preset = sys.argv[1]
cfg = resolve(preset=preset)
run = setup(cfg, synthetic_problem(cfg, None))
state = initial_state(cfg, run)
chunks = Chunks(cfg, run, run.train_key, task_mesh())
lowered = chunks._runner.lower(state, chunks._scalar(0), chunks._scalar(1))
trace = tempfile.mkdtemp()
with jax.profiler.trace(trace):
    compiled = lowered.compile()
[path] = list(Path(trace).rglob("*.trace.json.gz"))
events = [e for e in json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
          if e.get("ph") == "X"]
total, count = collections.Counter(), collections.Counter()
for e in events:
    if not e["name"].startswith("$"):  # XLA's spans, not Python frames
        total[e["name"]] += e["dur"] / 1e6
        count[e["name"]] += 1
print(f"{preset}: XLA's spans, seconds summed over threads (count)")
for name, seconds in total.most_common(14):
    print(f"  {seconds:7.2f} s  ({count[name]:5d})  {name}")
text = compiled.as_text()
per_body = collections.Counter()
for computation in re.split(r"\n(?=\S)", text):
    name = computation.split("\n")[0].split(" ")[0]
    per_body[name] += len(re.findall(r"^\s+%\S+ = \S+ fusion\(", computation, re.M))
print(f"fusions: {sum(per_body.values())}; the computations with the most:")
for name, n in per_body.most_common(4):
    print(f"  {n:5d}  {name[:70]}")
kinds = collections.defaultdict(list)
for e in events:
    if e["name"] == "FusionCompiler::Compile":
        kinds[re.sub(r"[.\d]+(_kernel_module)?$", "", e["args"].get("module", "?"))].append(
            e["dur"] / 1e3)
spent = sum(sum(v) for v in kinds.values())
print(f"FusionCompiler::Compile: {sum(len(v) for v in kinds.values())} fusions, "
      f"{spent / 1e3:.2f} s; the kinds with the most time:")
for name, durations in sorted(kinds.items(), key=lambda kv: -sum(kv[1]))[:8]:
    print(f"  {sum(durations):7.0f} ms  {len(durations):4d} x  {name}")

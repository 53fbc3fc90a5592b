"""One-off: a markdown table of first compiles from compile_times.py's JSON files
(compile_table.md, which benchmarks/README.md links).

    python compile_table.py OLD.json NEW.json [NEWER.json ...] > compile_table.md

One row per preset: the training loop's and the evaluation's compile (seconds) in each file,
in the order given; then a line counting, per file, the programs over 10 s, and the files.
"""
import json
import sys

runs = [{r["preset"]: r for r in json.load(open(path))} for path in sys.argv[1:]]
names = [r for r in runs[0] if all(r in run for run in runs)]
head = " | ".join(f"training ({i + 1})" for i in range(len(runs)))
head += " | " + " | ".join(f"evaluation ({i + 1})" for i in range(len(runs)))
print(f"| preset | {head} |")
print("| --- |" + " --- |" * (2 * len(runs)))
for name in names:
    cells = [f"{run[name]['train_compile_s']:.1f}" for run in runs]
    cells += [f"{run[name]['eval_compile_s']:.1f}" for run in runs]
    print(f"| {name} | " + " | ".join(cells) + " |")
over = [sum(run[n]["train_compile_s"] > 10 for n in names) for run in runs]
over_eval = [sum(run[n]["eval_compile_s"] > 10 for n in names) for run in runs]
print()
print("programs over 10 s, per file (training, evaluation): "
      + ", ".join(f"({i + 1}) {t}, {e}" for i, (t, e) in enumerate(zip(over, over_eval))))
for i, path in enumerate(sys.argv[1:]):
    print(f"({i + 1}): {path}")

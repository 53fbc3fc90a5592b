"""The results table, made from the row files that `benchmarks/reproduce.py` writes.

    python benchmarks/results_table.py [--results results] [--check]

Writes `results/README.md`: one line per `results/*.json`, fometa's accuracy in both
evaluation modes next to the paper's, the difference, the seeds and tasks, the machine, the
training time and the command. `--check` exits 1 if the file is not what the row files
make (the test suite runs it, so the table is never edited by hand).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HEADER = ("| row | fometa | fometa, transductive | paper | fometa - paper | seeds x tasks | "
          "machine | training | command |\n|---|---|---|---|---|---|---|---|---|\n")


def _accuracy(entry: dict | None) -> str:
    """'95.12 +/- 0.40%' (accuracy, percent) or 'mse 0.457 +/- 0.039', and the spread
    between seeds where there are several."""
    if not entry:
        return "-"
    spread = f", between seeds +/- {entry['seed_std']:.2f}" if entry.get("seed_std") else ""
    accuracy = entry["metric"] == "accuracy"
    ci = "" if entry["ci95"] is None else \
        f" +/- {entry['ci95']:.2f}" if accuracy else f" +/- {entry['ci95']:.2g}"
    if accuracy:
        return f"{entry['mean']:.2f}{ci}%{spread}"
    return f"{entry['metric']} {entry['mean']:.3g}{ci}{spread}"


def line(row: dict) -> str:
    ours, gaps = row["fometa"], row["minus_paper"]
    label = row["row"] if row["trained_as"] == row["preset"] else \
        f"{row['row']} (trained as {row['trained_as']})"
    if row["flags"]:
        label += " with " + ", ".join(f"{k}={v}" for k, v in row["flags"].items())
    if row.get("evaluated_with"):
        label += ", evaluated with " + ", ".join(f"{k}={v}"
                                                 for k, v in row["evaluated_with"].items())
    first = next(iter(ours.values()), {})
    minutes = sum(s.get("train_seconds", 0) for s in row["per_seed"]) / 60
    diff = ", ".join(f"{'transductive ' if m != 'eval' else ''}{g:+.2f}" for m, g in gaps.items())
    machine = row["hardware"]["devices"][0]
    if machine.startswith("cpu"):
        machine = f"{row['hardware']['cpu_cores']}-core CPU"
    training = f"{minutes:.0f} min" if minutes else "(shared)"
    return (f"| {label} | {_accuracy(ours.get('eval'))} | "
            f"{_accuracy(ours.get('eval_transductive'))} | {row['paper_text']} | {diff or '-'} | "
            f"{first.get('seeds', 0)} x {first.get('tasks', 0)} | {machine} | {training} | "
            f"`{row['command']}` |\n")


def table(results: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    return ("# Results\n\nMade by `python benchmarks/results_table.py` from the row files in "
            "this folder, which `benchmarks/reproduce.py` writes; never edited by hand. "
            "Each number is a mean over the evaluation tasks with its 95% interval (over seeds: "
            "the mean of the seeds' numbers and intervals, and the spread between seeds).\n\n"
            + HEADER + "".join(line(r) for r in rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if results/README.md is not what the row files make")
    args = parser.parse_args(argv)
    results = Path(args.results)
    text, out = table(results), results / "README.md"
    if args.check:
        if not out.is_file() or out.read_text() != text:
            print(f"{out} is not what the row files make; run python benchmarks/results_table.py")
            return 1
        return 0
    out.write_text(text)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every algorithm on Omniglot 5-way 1-shot at one short budget, with its ms per meta-step.

    python benchmarks/algorithms.py run [--meta-iters 300] [--eval-tasks 500] [--only NAME...]
    python benchmarks/algorithms.py table [--check]

`run` trains each algorithm with `fometa train` on the real Omniglot zips ($FOMETA_DATA_DIR)
from the same task shape and budget (5-way 1-shot, meta-batch 4, `--meta-iters`, evaluated
on `--eval-tasks` tasks), each on its own settings otherwise (below), times its meta-step
with `benchmarks/speed.py` (the same synthetic workload for all: 5 tasks, 5 inner steps of
10 images), and writes `results/algorithms/NAME.json`. `table` writes
`results/algorithms/README.md` from those files and puts the same table into README.md
between its `<!-- algorithms -->` markers (`--check`: exit 1 if either differs). A short
budget ranks how fast each learns, not where it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "algorithms"
README, BEGIN, END = ROOT / "README.md", "<!-- algorithms -->\n", "<!-- /algorithms -->\n"
COMMON = ["--dataset", "omniglot", "--ways", "5", "--shots", "1", "--meta-batch", "4",
          "--no-progress", "--no-plots"]
# name -> (fometa train flags beyond COMMON, speed.py --algorithm, what it is)
ALGORITHMS = {
    "reptile": (["--algorithm", "reptile"], "reptile",
                "the paper's Reptile row (inner Adam, summed loss, 50 evaluation steps)"),
    "fomaml": (["--algorithm", "fomaml"], "fomaml", "MAML's row settings, first order"),
    "maml": (["--algorithm", "maml"], "maml", "MAML's row settings (1 step of 0.4)"),
    "meta-sgd": (["--algorithm", "meta-sgd"], "meta-sgd",
                 "MAML's settings, 1 step, per-parameter learned rates"),
    "anil": (["--algorithm", "anil", "--inner-iters", "1", "--inner-lr", "0.4"], "anil",
             "MAML's settings (1 step of 0.4), adapting the output layer only"),
    "maml++": (["--algorithm", "maml", "--learn-inner-lr", "per-layer-step",
                "--multi-step-iters", "100", "--loss-reduction", "mean", "--inner-lr", "0.4",
                "--inner-iters", "2", "--eval-inner-iters", "2"], "maml++",
               "MAML, 2 steps from 0.4 (mean loss), per-layer per-step rates, multi-step loss"),
    "imaml": (["--algorithm", "imaml", "--inner-iters", "8", "--eval-inner-iters", "8"],
              "imaml", "the iMAML preset's settings with 8 inner steps, lam 2, 5 CG steps"),
}
HEADER = ("| algorithm | accuracy | transductive | ms per meta-step | compile | what runs |\n"
          "|---|---|---|---|---|---|\n")


def run(args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.only or ALGORITHMS:
        flags, speed_name, what = ALGORITHMS[name]
        run_dir = ROOT / "runs" / "algorithms" / name
        command = ["fometa", "train", *COMMON, *flags, "--meta-iters", str(args.meta_iters),
                   "--eval-tasks", str(args.eval_tasks), "--run-dir", str(run_dir)]
        subprocess.run([sys.executable, "-m", "fometa", *command[1:]], check=True)
        results = json.loads((run_dir / "results.json").read_text())
        speed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed.py"),
                                "--algorithm", speed_name, "--iters", str(args.speed_iters),
                                "--json"], check=True, capture_output=True, text=True)
        timing = json.loads(speed.stdout.strip().splitlines()[-1])
        row = {"algorithm": name, "what": what,
               "command": " ".join(command).replace(str(ROOT) + "/", ""),
               "eval": results["eval"], "eval_transductive": results["eval_transductive"],
               "train_seconds": results.get("train_seconds"),
               "ms_per_meta_step": timing["ms_per_meta_step"],
               "compile_seconds": timing["compile_s"],
               "speed_command": f"python benchmarks/speed.py --algorithm {speed_name} "
                                f"--iters {args.speed_iters}",
               "machine": f"{os.cpu_count()}-core {platform.machine()} CPU"
                          if timing["device"].startswith("cpu") else timing["device"]}
        (RESULTS / f"{name}.json").write_text(json.dumps(row, indent=1) + "\n")
        print(f"{name}: {100 * row['eval']['mean']:.1f}% "
              f"({row['ms_per_meta_step']:.1f} ms per meta-step)", flush=True)


def table() -> str:
    rows = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    order = [n for n in ALGORITHMS if n in rows] + sorted(set(rows) - set(ALGORITHMS))
    pct = lambda e: f"{100 * e['mean']:.1f} +/- {100 * e['ci95']:.1f}%"
    lines = [f"| {n} | {pct(rows[n]['eval'])} | {pct(rows[n]['eval_transductive'])} | "
             f"{rows[n]['ms_per_meta_step']:.1f} | {rows[n]['compile_seconds']:.1f} s | "
             f"{rows[n]['what']} |\n" for n in order]
    first = rows[order[0]] if order else {}
    return ("# Every algorithm at one short budget\n\n"
            "Made by `python benchmarks/algorithms.py table` from the files beside it. "
            "Omniglot 5-way 1-shot, meta-batch 4, "
            f"{first.get('command', '').split('--meta-iters ')[-1].split()[0] if order else '?'}"
            " meta-iterations; accuracy on the evaluation tasks after each algorithm's "
            "evaluation steps, with its 95% interval; ms per meta-step from "
            "`benchmarks/speed.py --algorithm NAME` (5 tasks, 5 inner steps of 10 images, "
            f"the same for all) on {first.get('machine', '?')}.\n\n" + HEADER + "".join(lines)
            + "\nCommands:\n\n" + "".join(f"- {n}: `{rows[n]['command']}`; "
                                         f"`{rows[n]['speed_command']}`\n" for n in order))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--meta-iters", type=int, default=300)
    r.add_argument("--eval-tasks", type=int, default=500)
    r.add_argument("--speed-iters", type=int, default=10)
    r.add_argument("--only", nargs="+", choices=tuple(ALGORITHMS))
    t = sub.add_parser("table")
    t.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args)
    text = table()
    path = RESULTS / "README.md"
    readme = README.read_text()
    if BEGIN not in readme or END not in readme:
        print(f"README.md lacks the markers {BEGIN.strip()} ... {END.strip()}", file=sys.stderr)
        return 1
    head, rest = readme.split(BEGIN, 1)
    block = text.split("\n\n", 1)[1].split("\nCommands:")[0]  # the note and the table
    new_readme = head + BEGIN + block + "\n" + END + rest.split(END, 1)[1]
    if args.command == "table" and args.check:
        if not path.exists() or path.read_text() != text or readme != new_readme:
            print(f"{path} or README.md is not what the row files make: run "
                  "python benchmarks/algorithms.py table", file=sys.stderr)
            return 1
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    README.write_text(new_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())

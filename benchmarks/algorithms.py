"""Every algorithm on Omniglot 5-way 1-shot at one short budget, with its ms per meta-step.

    python benchmarks/algorithms.py run [--meta-iters 300] [--eval-tasks 500] [--only NAME...]
    python benchmarks/algorithms.py speed [--speed-iters 10]
    python benchmarks/algorithms.py table [--check]

`run` trains each algorithm with `fometa train` on the real Omniglot zips ($FOMETA_DATA_DIR)
from the same task shape and budget (5-way 1-shot, meta-batch 4, `--meta-iters`, evaluated
on `--eval-tasks` tasks), each on its own settings otherwise (below), times its meta-step
with `benchmarks/speed.py` (the same synthetic workload for all: 5 tasks, 5 inner steps of
10 images), and writes `results/algorithms/NAME.json`. `table` writes
`results/algorithms/README.md` from those files (`speed` times every row's meta-step
again, one after another, so that the column compares like with like) and puts the same
table into README.md between its `<!-- algorithms -->` markers (`--check`: exit 1 if either differs). A short
budget ranks how fast each learns, not where it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "algorithms"
README, BEGIN, END = ROOT / "README.md", "<!-- algorithms -->\n", "<!-- /algorithms -->\n"
COMMON = ["--dataset", "omniglot", "--ways", "5", "--shots", "1", "--meta-batch", "4",
          "--no-progress", "--no-plots"]
MAML2 = ["--algorithm", "maml", "--loss-reduction", "mean", "--inner-lr", "0.4",
         "--inner-iters", "2", "--eval-inner-iters", "2"]
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
    "maml++": ([*MAML2, "--learn-inner-lr", "per-layer-step", "--per-step-bn",
                "--multi-step-iters", "100", "--outer-lr-final", "1e-5"], "maml++",
               "MAML, 2 steps from 0.4 (mean loss), with MAML++'s per-layer per-step rates, "
               "per-step batch norm, multi-step loss and cosine outer step size"),
    "imaml": (["--algorithm", "imaml", "--inner-iters", "8", "--eval-inner-iters", "8"],
              "imaml", "the iMAML preset's settings with 8 inner steps, lam 2, 5 CG steps"),
}
# MAML++'s options one at a time, each added to the same 2-step MAML (Antoniou et al. 2019,
# Sec. 4); derivative-order annealing and the cosine schedule leave a meta-step's time as
# MAML's, so their rows take MAML's speed variant.
ALGORITHMS.update({
    "maml-2step": (MAML2, "maml", "MAML, 2 steps from 0.4 (mean loss): the base of the "
                   "MAML++ options below"),
    "+msl": ([*MAML2, "--multi-step-iters", "100"], "maml+msl",
             "maml-2step with the multi-step loss (annealed over 100 meta-iterations)"),
    "+doa": ([*MAML2, "--first-order-iters", "100"], "maml",
             "maml-2step, first order for the first 100 meta-iterations"),
    "+bnwb": ([*MAML2, "--per-step-bn"], "maml+bnwb",
              "maml-2step with per-step batch-norm weights and biases"),
    "+lslr": ([*MAML2, "--learn-inner-lr", "per-layer-step"], "maml+lslr",
              "maml-2step with per-layer per-step learned inner rates"),
    "+cosine": ([*MAML2, "--outer-lr-final", "1e-5"], "maml",
                "maml-2step with Adam's step size annealed by a cosine to 1e-5"),
})
HEADER = ("| algorithm | accuracy | transductive | ms per meta-step | compile | what runs |\n"
          "|---|---|---|---|---|---|\n")


def run(args) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.only or ALGORITHMS:
        flags, speed_name, what = ALGORITHMS[name]
        run_dir = ROOT / "runs" / "algorithms" / name
        shutil.rmtree(run_dir, ignore_errors=True)  # a row is trained afresh, never resumed
        command = ["fometa", "train", *COMMON, *flags, "--meta-iters", str(args.meta_iters),
                   "--eval-tasks", str(args.eval_tasks), "--run-dir", str(run_dir)]
        if subprocess.run([sys.executable, "-m", "fometa", *command[1:]]).returncode:
            raise SystemExit(f"algorithms: error: training {name} failed (above)")
        results = json.loads((run_dir / "results.json").read_text())
        row = {"algorithm": name, "what": what,
               "command": " ".join(command).replace(str(ROOT) + "/", ""),
               "eval": results["eval"], "eval_transductive": results["eval_transductive"],
               "train_seconds": results.get("train_seconds"), "meta_iters": args.meta_iters,
               **timed(speed_name, args.speed_iters)}
        (RESULTS / f"{name}.json").write_text(json.dumps(row, indent=1) + "\n")
        print(f"{name}: {100 * row['eval']['mean']:.1f}% "
              f"({row['ms_per_meta_step']:.1f} ms per meta-step)", flush=True)


def timed(speed_name: str, iters: int) -> dict:
    """A row's timing fields, from `benchmarks/speed.py --algorithm speed_name` run now."""
    speed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed.py"),
                            "--algorithm", speed_name, "--iters", str(iters), "--json"],
                           check=True, capture_output=True, text=True)
    timing = json.loads(speed.stdout.strip().splitlines()[-1])
    return {"ms_per_meta_step": timing["ms_per_meta_step"],
            "compile_seconds": timing["compile_s"],
            "speed_command": f"python benchmarks/speed.py --algorithm {speed_name} "
                             f"--iters {iters}",
            "machine": f"{os.cpu_count()}-core {platform.machine()} CPU"
                       if timing["device"].startswith("cpu") else timing["device"]}


def retime(args) -> None:
    """Times every row's meta-step again, one after another (the same conditions for all),
    keeping its accuracy."""
    for path in sorted(RESULTS.glob("*.json")):
        row = json.loads(path.read_text())
        speed_name = ALGORITHMS[row["algorithm"]][1]
        row.update(timed(speed_name, args.speed_iters))
        path.write_text(json.dumps(row, indent=1) + "\n")
        print(f"{row['algorithm']}: {row['ms_per_meta_step']:.1f} ms per meta-step", flush=True)


def table() -> str:
    rows = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    order = [n for n in ALGORITHMS if n in rows] + sorted(set(rows) - set(ALGORITHMS))
    pct = lambda e: f"{100 * e['mean']:.1f} +/- {100 * e['ci95']:.1f}%"
    lines = [f"| {n} | {pct(rows[n]['eval'])} | {pct(rows[n]['eval_transductive'])} | "
             f"{rows[n]['ms_per_meta_step']:.1f} | {rows[n]['compile_seconds']:.1f} s | "
             f"{rows[n]['what']} |\n" for n in order]
    first = rows[order[0]] if order else {}
    iters = (first.get("meta_iters")
             or first.get("command", "? ").split("--meta-iters ")[-1].split()[0])
    return ("# Every algorithm at one short budget\n\n"
            "Made by `python benchmarks/algorithms.py table` from the files beside it. "
            "Omniglot 5-way 1-shot, meta-batch 4, "
            f"{iters} meta-iterations; accuracy on the evaluation tasks after each algorithm's "
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
    sp = sub.add_parser("speed")
    sp.add_argument("--speed-iters", type=int, default=10)
    t = sub.add_parser("table")
    t.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args)
    if args.command == "speed":
        retime(args)
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

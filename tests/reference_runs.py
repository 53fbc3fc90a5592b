"""Small runs of `fometa train` on fixed seeds and a summary of what they wrote, read with
plain json and orbax (never through fometa), so that a summary recorded at one commit can
be compared with the same runs at another (`test_reference_runs.py`).

`python tests/reference_runs.py OUT.json` runs them all and writes the summaries.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from synthetic import write_full_omniglot

DRAWINGS = 3  # per character: enough for 2 training shots and a query


def write_omniglot(root: Path) -> Path:
    """The archive the reference runs were recorded on (1623 characters of 3 drawings)."""
    return write_full_omniglot(root, DRAWINGS)


# name -> (needs the synthetic Omniglot, fometa train arguments after the common ones)
RUNS: dict[str, tuple[bool, list[str]]] = {
    "sine-reptile": (False, ["--seed", "5", "--meta-iters", "300", "--log-every", "100",
                             "--eval-every", "200", "--eval-tasks", "40"]),
    "sine-maml": (False, ["--preset", "maml-sine", "--seed", "2", "--meta-iters", "40",
                          "--log-every", "20", "--meta-batch", "4", "--eval-tasks", "20"]),
    # --loss-reduction and --task-order: settings added since, at the values that computed
    # what these presets computed then.
    "omniglot-reptile": (True, ["--preset", "reptile-omniglot-5w1s", "--seed", "1",
                                "--loss-reduction", "mean", "--task-order", "parallel",
                                "--meta-iters", "4", "--log-every", "2", "--meta-batch", "2",
                                "--train-shots", "2", "--inner-iters", "2", "--inner-batch", "4",
                                "--eval-tasks", "6", "--eval-inner-iters", "2"]),
    "omniglot-fomaml": (True, ["--preset", "fomaml-omniglot-5w1s", "--seed", "3",
                               "--loss-reduction", "mean",
                               "--omniglot-split", "paper", "--meta-iters", "4",
                               "--log-every", "2", "--meta-batch", "2", "--queries", "1",
                               "--inner-iters", "2", "--eval-tasks", "6",
                               "--eval-inner-iters", "2"]),
}
COMMON = ["--no-progress"]

def argv(name: str, run_dir: Path, data_dir: Path | None) -> list[str]:
    needs_data, args = RUNS[name]
    data = ["--data-dir", str(data_dir)] if needs_data else []
    return ["train", *args, *data, *COMMON, "--run-dir", str(run_dir)]


def _params(run_dir: Path, step: int) -> dict[str, list[float]]:
    """Per parameter leaf (by its path): [sum, sum of squares, dot with a fixed random vector]."""
    import orbax.checkpoint as ocp

    path = (run_dir / "checkpoints" / str(step) / "default").absolute()
    tree = ocp.StandardCheckpointer().restore(path)
    out = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k in sorted(node):
                walk(node[k], f"{prefix}/{k}")
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f"{prefix}/{i}")
        else:
            x = np.asarray(node, np.float64).ravel()
            w = np.random.default_rng(x.size).standard_normal(x.size)
            out[prefix] = [float(x.sum()), float((x * x).sum()), float(x @ w)]

    walk(tree["state"], "state")
    return out


def summary(run_dir: Path) -> dict:
    """What a run wrote: config.json's settings, results.json's numbers, metrics.jsonl
    without wall-clock seconds, and the final checkpoint's meta-state."""
    results = json.loads((run_dir / "results.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())["config"]
    del config["data_dir"]  # a temporary folder
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "config": config,
        "results": {k: results[k] for k in results if k.startswith("eval")}
        | {"meta_iterations": results["meta_iterations"], "resumed_from": results["resumed_from"],
           "remat": results.get("remat")},
        "metrics": [{k: v for k, v in l.items() if k != "seconds"} for l in lines],
        "state": _params(run_dir, results["meta_iterations"]),
    }


def main(out: str) -> None:
    import tempfile

    from fometa.run.cli import main as fometa

    tmp = Path(tempfile.mkdtemp())
    os.environ["FOMETA_CACHE_DIR"] = str(tmp / "cache")
    data = write_omniglot(tmp / "omniglot")
    summaries = {}
    for name in RUNS:
        assert fometa(argv(name, tmp / name, data)) == 0, name
        summaries[name] = summary(tmp / name)
    Path(out).write_text(json.dumps(summaries, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])

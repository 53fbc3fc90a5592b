"""The command line: runs, run directories, and one-line errors for bad input."""

import json
import math
import subprocess
import sys

import pytest

from fometa.run.cli import main

SMALL = ["--meta-iters", "200", "--log-every", "100", "--eval-tasks", "50", "--no-progress"]


@pytest.mark.parametrize("argv, names", [
    (["train", "--algorithm", "sgd"], ["'sgd'", "reptile", "fomaml", "maml"]),
    (["train", "--dataset", "cifar"], ["'cifar'", "sine", "omniglot"]),
    (["train", "--meta-iters", "0"], ["0", "from 1"]),
    (["train", "--meta-batch", "-3"], ["-3", ">= 1"]),
    (["train", "--inner-iters", "2.5"], ["2.5", "whole number"]),
    (["train", "--inner-lr", "nan"], ["nan", "finite"]),
    (["train", "--inner-lr", "-0.1"], ["-0.1", "> 0"]),
    (["train", "--meta-step-final", "-1"], ["-1", ">= 0"]),
    (["train", "--eval-tasks", "0"], ["0", ">= 1"]),
    (["train", "--seed", "-1"], ["-1", "from 0"]),
    (["train", "--preset", "nope"], ["'nope'", "reptile-sine"]),
    (["train", "--dataset", "omniglot", "--data-dir", "/nonexistent"], ["/nonexistent"]),
    (["train", "--ways", "5"], ["--ways 5", "sine"]),
    (["train", "--preset", "maml-sine", "--dataset", "omniglot"], ["maml-sine", "'omniglot'"]),
    (["eval"], ["--run-dir"]),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, names, cli_error):
    err = cli_error(argv)
    for name in names:
        assert name in err


def test_eval_of_missing_or_damaged_run(capsys, tmp_path, cli_error):
    err = cli_error(["eval", "--run-dir", str(tmp_path / "none")])
    assert "config.json" in err
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), *SMALL]) == 0
    for f in (run / "checkpoints" / "200").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(b"\x00garbage")
    err = cli_error(["eval", "--run-dir", str(run)])
    assert str(run / "checkpoints" / "200") in err


def test_no_traceback_from_the_console_script(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fometa", "train", "--inner-lr", "nan"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_train_writes_the_run_directory(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--seed", "3", *SMALL]) == 0
    files = {p.name for p in run.iterdir()}
    assert {"config.json", "metrics.jsonl", "results.json", "adaptation.png"} <= files
    results = json.loads((run / "results.json").read_text())
    assert results["meta_iterations"] == 200
    assert results["config"]["seed"] == 3 and results["config"]["meta_iters"] == 200
    ev = results["eval"]
    assert ev["metric"] == "mse" and ev["tasks"] == 50
    assert math.isfinite(ev["mean"]) and ev["mean"] > 0 and 0 < ev["ci95"] < ev["mean"]
    assert results["wall_seconds"] > 0
    config = json.loads((run / "config.json").read_text())
    assert set(config) >= {"config", "versions", "devices"}
    assert set(config["versions"]) == {"fometa", "jax", "flax", "optax"}
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    train = [l for l in lines if l["kind"] == "train"]
    assert [l["iteration"] for l in train] == [100, 200]
    assert all({"support_loss", "query_loss", "seconds"} <= set(l) for l in train)
    assert lines[-1]["kind"] == "eval" and lines[-1]["eval"]["mean"] == ev["mean"]
    assert (run / "adaptation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Re-evaluation of the saved state with the same settings gives the same number,
    # and a longer adaptation budget is honoured.
    capsys.readouterr()
    assert main(["eval", "--run-dir", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["eval"]["mean"] == pytest.approx(ev["mean"], rel=1e-6)
    assert again["meta_iterations"] == 200
    assert main(["eval", "--run-dir", str(run), "--eval-inner-iters", "3", "--json"]) == 0
    short = json.loads(capsys.readouterr().out)
    assert short["eval"]["inner_iters"] == 3 and short["eval"]["mean"] != ev["mean"]


def test_presets_lists_every_preset(capsys):
    from fometa.run import PRESETS

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name, preset in PRESETS.items():
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        for number in preset.paper.values():
            assert number + "%" in line
    assert "95.39 +/- 0.09% (transductive 97.68 +/- 0.04%)" in out

"""Few-shot classification end to end: the command on synthetic archives and on real Omniglot."""

import json
import os

import pytest
from synthetic import write_mini

from fometa.run.cli import main

REAL_DATA_DIR = os.environ.get("FOMETA_DATA_DIR", "")
CLASSES = {split: {f"n{10 * j + i:02d}": 8 for i in range(5)}
           for j, split in enumerate(("train", "val", "test"))}
TINY = ["--meta-iters", "4", "--log-every", "2", "--meta-batch", "2", "--train-shots", "2",
        "--inner-iters", "2", "--inner-batch", "4", "--eval-tasks", "6",
        "--eval-inner-iters", "2", "--no-progress"]


@pytest.fixture(scope="module")
def mini_dir(tmp_path_factory):
    return write_mini(tmp_path_factory.mktemp("data") / "mini", "folders", sizes=((84, 84),),
                      counts=CLASSES)


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FOMETA_CACHE_DIR", str(tmp_path / "cache"))


def test_mini_imagenet_run_reports_both_evaluation_modes(mini_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "mini-imagenet", "--data-dir", str(mini_dir),
                 "--run-dir", str(run), "--no-plots", *TINY]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["meta_iterations"] == 4
    for name in ("eval", "eval_transductive"):
        ev = results[name]
        assert ev["metric"] == "accuracy" and ev["tasks"] == 6 and ev["inner_iters"] == 2
        # 5 ways, one query per class: each task's accuracy is a multiple of 1/5.
        assert 0.0 <= ev["mean"] <= 1.0 and round(ev["mean"] * 30, 4) % 1 == 0
    cfg = results["config"]
    assert (cfg["ways"], cfg["shots"], cfg["preset"]) == (5, 1, None)
    assert "transductive" in capsys.readouterr().out
    assert main(["eval", "--run-dir", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["eval"]["mean"] == pytest.approx(results["eval"]["mean"])
    assert again["eval_transductive"]["mean"] == pytest.approx(results["eval_transductive"]["mean"])


@pytest.mark.parametrize("extra, words", [
    (["--ways", "6"], ["--ways 6", "5 classes"]),
    (["--train-shots", "8"], ["9 examples per class", "8"]),
    (["--shots", "8"], ["9 examples per class", "test"]),
])
def test_impossible_episodes_are_one_line_errors(mini_dir, tmp_path, cli_error, extra, words):
    err = cli_error(["train", "--dataset", "mini-imagenet", "--data-dir", str(mini_dir),
                     "--run-dir", str(tmp_path / "run"), *TINY, *extra])
    for w in words:
        assert w in err


def test_missing_archive_is_a_one_line_error(tmp_path, cli_error):
    (tmp_path / "omniglot").mkdir()
    (tmp_path / "omniglot" / "images_background.zip").write_bytes(b"PK\x03\x04 truncated")
    err = cli_error(["train", "--dataset", "omniglot", "--data-dir", str(tmp_path / "omniglot"),
                     *TINY])
    assert "images_" in err


# Every algorithm, 80 meta-iterations of 5-way 1-shot on the real Omniglot zips, from its
# preset with a short budget (MAML-family rows with the mean loss and two inner steps at
# 0.4, so that two steps stay stable this early): well above chance (20%) on 60 tasks.
LEARNS = {
    "reptile": [],
    "meta-sgd": ["--loss-reduction", "mean", "--inner-lr", "0.4", "--inner-iters", "2"],
    "anil": ["--ways", "5", "--inner-iters", "2", "--eval-inner-iters", "5"],
    "imaml": ["--inner-iters", "4", "--eval-inner-iters", "4", "--cg-steps", "2"],
    "maml++": ["--learn-inner-lr", "per-layer-step", "--multi-step-iters", "40", "--per-step-bn",
               "--loss-reduction", "mean", "--inner-lr", "0.4", "--inner-iters", "2"],
}


@pytest.mark.skipif(not REAL_DATA_DIR, reason="FOMETA_DATA_DIR is not set")
@pytest.mark.parametrize("algorithm", LEARNS)
def test_each_algorithm_learns_on_real_omniglot(algorithm, tmp_path, capsys):
    run = tmp_path / "run"
    name = "maml" if algorithm == "maml++" else algorithm
    steps = [] if algorithm == "reptile" else ["--meta-batch", "4", "--eval-inner-iters", "2"]
    assert main(["train", "--dataset", "omniglot", "--algorithm", name, *steps,
                 *LEARNS[algorithm], "--meta-iters", "80", "--log-every", "40",
                 "--eval-tasks", "60", "--run-dir", str(run), "--no-progress",
                 "--no-plots"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["eval"]["mean"] > 0.35, results["eval"]
    assert results["eval_transductive"]["mean"] > 0.35, results["eval_transductive"]
    # The trained state restores from its checkpoint and evaluates to the same numbers.
    capsys.readouterr()
    assert main(["eval", "--run-dir", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["eval"]["mean"] == results["eval"]["mean"]

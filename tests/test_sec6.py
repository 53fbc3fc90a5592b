"""The Sec. 6 scripts (benchmarks/sec6.py) at a tiny budget, on small random Omniglot-shaped
splits put in place of the dataset's through the run wing's dataset registry."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fometa.run.problems import DATASETS, Splits

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import sec6  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def small_omniglot(monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 20, 28, 28, 1), dtype=np.uint8)  # 20 per class, as Omniglot
    splits = Splits(images, images[:8], rotate_train=True, rotate_test=False)
    monkeypatch.setitem(DATASETS, "omniglot", DATASETS["omniglot"]._replace(
        splits=lambda cfg: splits))


TINY = ["--meta-iters", "4", "--log-every", "2", "--eval-every", "2", "--eval-tasks", "3"]


def test_gradients_runs_the_papers_commands(small_omniglot, tmp_path):
    runs = sec6.EXPERIMENTS["gradients"]()
    # The README's ten commands: Reptile on k = 1..4 steps (and 2..4 with the meta step
    # divided by k), and the paper's FOML for k = 2..4, with 5k training shots.
    assert len(runs) == 10
    assert {n: (r["algorithm"], r["inner_iters"], r["train_shots"], r["meta_step"])
            for n, r in runs.items() if n in ("g1", "g2", "(g1+g2+g3)/3", "g1+...+g4")} == {
        "g1": ("reptile", 1, 5, 0.25), "g2": ("foml", 2, 10, 0.25),
        "(g1+g2+g3)/3": ("reptile", 3, 15, 0.08325), "g1+...+g4": ("reptile", 4, 20, 0.25)}
    out = tmp_path / "gradients.json"
    # k = 4 takes all 20 images of a class: there is no training query (the paper's code
    # draws none, and Reptile and FOML never read one).
    assert sec6.main(["gradients", *TINY, "--only", "g4", "--runs", str(tmp_path / "runs"),
                      "--out", str(out), "--figure", str(tmp_path / "g.png")]) == 0
    results = json.loads(out.read_text())
    assert results["budget"]["meta_iters"] == 4 and set(results["runs"]) == {"g4"}
    for r in results["runs"].values():
        assert [it for it, _ in r["curve"]] == [2, 4]  # every --eval-every, and the end
        assert r["final"]["tasks"] == 3 and 0 <= r["final"]["mean"] <= 1
    config = json.loads(
        (tmp_path / "runs" / "gradients" / "g4" / "config.json").read_text())["config"]
    assert (config["algorithm"], config["loss_reduction"], config["train_shots"],
            config["queries"]) == ("foml", "sum", 20, 0)
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG


def test_overlap_sweeps_four_methods(small_omniglot, tmp_path):
    runs = sec6.EXPERIMENTS["overlap"]()
    assert len(runs) == 4 * 6
    tail = runs["FOML, separate tail, 4 steps, batch 15"]
    assert (tail["foml_tail"], tail["inner_batch"], tail["train_shots"]) == (3, 15, 10)
    assert runs["FOML, shared tail (replacement), 2 steps, batch 10"]["replacement"] is True
    only = "FOML, separate tail, 2 steps, batch 10"
    out = tmp_path / "overlap.json"
    assert sec6.main(["overlap", *TINY, "--only", only, "--runs", str(tmp_path / "runs"),
                      "--out", str(out), "--figure", str(tmp_path / "o.png")]) == 0
    assert set(json.loads(out.read_text())["runs"]) == {only}
    assert (tmp_path / "o.png").read_bytes()[:8] == PNG

"""benchmarks/reproduce.py writes a row file per paper row, and benchmarks/results_table.py
makes the results table from those files only (the committed table included)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fometa.run import TrainingInterrupted

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import algorithms  # noqa: E402
import reproduce  # noqa: E402
import results_table  # noqa: E402


def test_rows_come_from_runs_and_the_table_from_rows(tmp_path):
    argv = ["--preset", "reptile-sine", "--seeds", "2", "--variant", "tiny", "--runs",
            str(tmp_path / "runs"), "--out", str(tmp_path / "results"), "--",
            "--meta-iters", "100", "--log-every", "50", "--eval-tasks", "20"]
    assert reproduce.main(argv) == 0
    row = json.loads((tmp_path / "results" / "reptile-sine+tiny.json").read_text())
    seeds = row["per_seed"]
    assert [s["seed"] for s in seeds] == [0, 1] and row["flags"]["meta_iters"] == 100
    for s in seeds:  # each seed's number is its run's results.json
        results = json.loads((Path(s["run_dir"]) / "results.json").read_text())
        assert s["eval"] == results["eval"] and results["config"]["seed"] == s["seed"]
    assert row["fometa"]["eval"]["mean"] == pytest.approx(np.mean([s["eval"]["mean"]
                                                                   for s in seeds]))
    assert seeds[0]["eval"]["mean"] != seeds[1]["eval"]["mean"]
    assert row["command"].startswith("python benchmarks/reproduce.py --preset reptile-sine")
    # The same command again trains nothing more and writes the same numbers.
    assert reproduce.main(argv) == 0
    again = json.loads((tmp_path / "results" / "reptile-sine+tiny.json").read_text())
    assert again["fometa"] == row["fometa"]
    # The table is made from the row files; --check refuses an edited one.
    assert results_table.main(["--results", str(tmp_path / "results")]) == 0
    table = (tmp_path / "results" / "README.md").read_text()
    assert "reptile-sine+tiny" in table and f"{row['fometa']['eval']['mean']:.3g}" in table
    assert results_table.main(["--results", str(tmp_path / "results"), "--check"]) == 0
    (tmp_path / "results" / "README.md").write_text(table.replace("reptile-sine", "typed"))
    assert results_table.main(["--results", str(tmp_path / "results"), "--check"]) == 1


def test_an_interrupted_row_says_how_to_resume_in_one_line(monkeypatch, tmp_path, capsys):
    def interrupted(cfg, run_dir, **kwargs):
        raise TrainingInterrupted(300)
    monkeypatch.setattr(reproduce, "train", interrupted)
    code = reproduce.main(["--preset", "reptile-sine", "--runs", str(tmp_path),
                           "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 130 and err == ("reproduce: interrupted at meta-iteration 300; rerun the "
                                   "same command to resume\n")


@pytest.mark.skipif(not list((ROOT / "results").glob("*.json")), reason="no committed rows yet")
def test_the_committed_table_is_made_from_the_committed_rows():
    assert results_table.main(["--results", str(ROOT / "results"), "--check"]) == 0


def test_the_algorithms_table_is_made_from_its_rows(monkeypatch, tmp_path):
    # The committed table (results/algorithms/README.md and the README's copy) is what the
    # committed row files make; an edited copy is refused.
    assert algorithms.main(["table", "--check"]) == 0
    readme = tmp_path / "README.md"
    readme.write_text(algorithms.README.read_text().replace("| maml |", "| typed |"))
    monkeypatch.setattr(algorithms, "README", readme)
    assert algorithms.main(["table", "--check"]) == 1

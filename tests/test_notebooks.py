"""Every notebook runs top to bottom (with a small budget), so notebooks never rot."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from synthetic import write_full_omniglot

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "omniglot.ipynb",
                                           "pipeline.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("FOMETA_NOTEBOOK_ITERS", "50" if path.name == "omniglot.ipynb" else "300")
    monkeypatch.setenv("FOMETA_NOTEBOOK_EVAL_TASKS", "50")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if path.name == "omniglot.ipynb" and not os.environ.get("FOMETA_DATA_DIR"):
        # No real Omniglot here: the paper split's 1623 characters, 11 random drawings each
        # (10 training shots and a query).
        monkeypatch.setenv("FOMETA_DATA_DIR", str(write_full_omniglot(tmp_path / "omniglot", 11)))
        monkeypatch.setenv("FOMETA_CACHE_DIR", str(tmp_path / "cache"))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors

"""The example notebook runs, cell by cell in a real kernel (nbclient), against the test session's local cloud."""

from __future__ import annotations

import os

import pytest

from tollgate.topology import ROOT

pytestmark = pytest.mark.e2e


def test_the_example_notebook_runs(local_cloud, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    for key, value in {**local_cloud.env(), "TOLLGATE_HOME": str(local_cloud.home), "TOLLGATE_ROOT": str(ROOT),
                       "NOTEBOOK_DATASET": "notebook_wine"}.items():
        monkeypatch.setenv(key, value)   # the kernel inherits the environment
    notebook = nbformat.read(ROOT / "examples" / "notebook.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                      for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
    assert "'decision': 'promote'" in outputs and "accuracy on 100 new wines: " in outputs, outputs[-2000:]
    accuracy = float(outputs.split("accuracy on 100 new wines: ")[1][:4])
    assert accuracy > 0.8
    assert os.environ["NOTEBOOK_DATASET"] == "notebook_wine"

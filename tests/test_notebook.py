"""examples/tour.ipynb runs from top to bottom (nbclient, in the test extra), plots included."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

TOUR = Path(__file__).resolve().parent.parent / "examples" / "tour.ipynb"


def test_the_tour_notebook_runs_and_shows_its_plots():
    notebook = nbformat.read(TOUR, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(TOUR.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # the curves, the per-layer statistics, the BatchNorm comparison
    text = "".join(o.get("text", "") for o in outputs)
    for expected in ("History: 3 epochs", "output shape", "Evaluation(loss=", "without BatchNorm:", "with BatchNorm:"):
        assert expected in text

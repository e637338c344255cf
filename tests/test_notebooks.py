"""The example notebooks run top to bottom without an error."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here runs a session, a cluster or the command line of its own

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _execute(name, keep=None):  # type: ignore[no-untyped-def]
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    if keep is not None:
        keep.append(notebook)
    return outputs


def test_backtest_notebook_executes_on_the_bundled_bars_and_its_charts_show_when_exported(tmp_path, chromium):
    from tests.conftest import rendered_dom

    executed: list = []
    outputs = _execute("backtest.ipynb", keep=executed)
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 3  # backtest, heatmap, walk-forward
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "12,556 bars from 2024-09-14 00:00:00+00:00" in text  # the real bars shipped with Cival
    assert "combinations; best by Sharpe" in text and "stitched out of sample" in text
    # Exported to HTML (what `jupyter nbconvert --to html` writes), every chart is drawn by
    # plotly.js in a browser, with no network: the figures carry an HTML form too.
    nbconvert = pytest.importorskip("nbconvert")
    html, _ = nbconvert.HTMLExporter().from_notebook_node(executed[0])
    page = tmp_path / "backtest.html"
    page.write_text(html, encoding="utf-8")
    dom = rendered_dom(chromium, page)
    assert dom.count('class="plot-container plotly"') == 3, "the exported notebook does not draw its three charts"


def test_farms_notebook_compares_two_policies():
    outputs = _execute("farms.ipynb")
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 1
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert text.count("audit OK:") == 2 and "rebalances; the last moved" in text
    lines = [line for line in text.splitlines() if "total equity" in line]
    assert len(lines) == 2 and lines[0] != lines[1] and all("audit OK" in line for line in lines)

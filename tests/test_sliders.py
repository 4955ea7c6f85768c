"""Chapter 5's offline sliders: the page's script computes what Python computes (three weight sets,
in headless Chromium with the network off, a preset chosen and a slider moved), and the weights it
exports are a file `make study WEIGHTS=` reads."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from studylib.analysis import sliders
from studylib.outputs import Result
from studylib.ranker.weights import HEADS, load_weights
from browser import check_page

PRESETS = ("april_2023", "march_2023", "equal_contribution", "x_2026_mapped")

def _frame(requests: int = 40, seed: int = 1) -> pd.DataFrame:
    """A scored table's columns: true probabilities and noisy predictions, uneven request sizes."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 31, requests)
    ids = np.repeat(rng.permutation(np.arange(1000, 1000 + requests)), sizes)
    n = ids.size
    rates = np.array([0.05, 0.02, 0.02, 0.03, 0.02, 0.03, 0.01, 0.003, 0.02, 0.03])
    truth = np.clip(rng.gamma(1.5, 1.0, (n, 10)) * rates, 0, 1)
    prob = np.clip(truth * rng.lognormal(0.0, 0.6, (n, 10)), 0, 1)
    columns = {"request_id": ids}
    for i, h in enumerate(sliders.SHORT_HEADS):
        columns[f"prob.{h}"], columns[f"true_prob.{h}"] = prob[:, i].astype(np.float32), truth[:, i].astype(np.float32)
    return pd.DataFrame(columns)


def _presets() -> dict[str, np.ndarray]:
    return {name: load_weights(name).vector(HEADS) for name in PRESETS}


def test_reference_numbers_are_consistent():
    s = sliders.sample(_frame(), max_requests=25)
    assert s.n_requests == 25 and s.total_requests == 40 and s.prob.shape == (s.counts.sum(), 10)
    base = _presets()["april_2023"]
    same = sliders.reference(s, base, base)
    assert same["kendall_tau"] == pytest.approx(1.0) and same["utility"] == pytest.approx(same["base_utility"])
    other = sliders.reference(s, _presets()["x_2026_mapped"], base)
    assert other["kendall_tau"] < 1 and other["utility"] <= other["oracle"] + 1e-12
    assert other["regret"] == pytest.approx(other["oracle"] - other["utility"])
    assert 0 < other["negative_share"] < 1


def test_page_computes_what_python_computes_offline(tmp_path):
    s = sliders.sample(_frame())
    lines = {"model": [[0.3, 0.010], [0.35, 0.014]], "oracle": [[0.32, 0.009], [0.37, 0.012]]}
    snippet = sliders.page_html(s, _presets(), "april_2023", 10, lines, "Frontier: test.")
    page = tmp_path / "page.html"
    page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{snippet}</body></html>")
    back, presets, base, k = sliders.embedded(page.read_text())  # what the page carries is the sample itself
    assert np.array_equal(back.prob, s.prob) and np.array_equal(back.truth, s.truth) and (base, k) == ("april_2023", 10)
    states = check_page(page, tmp_path)
    assert all(state["frontier"] == 2 for state in states.values())


def test_frontier_is_read_when_present(tmp_path):
    assert sliders.frontier(tmp_path)[0] is None
    pd.DataFrame({"scorer": ["model", "model", "oracle"], "negative_scale": [2.0, 1.0, 1.0],
                  "positive": [0.1, 0.2, 0.3], "negative": [0.01, 0.02, 0.03]}).to_csv(tmp_path / Result.FRONTIER)
    lines, _ = sliders.frontier(tmp_path)
    assert lines == {"model": [[0.2, 0.02], [0.1, 0.01]], "oracle": [[0.3, 0.03]]}


def test_the_live_panel_saves_weights_that_make_study_reads_from_any_folder(tmp_path, capsys, monkeypatch):
    """Chapter 5 in JupyterLab: the panel's save button writes the slider weights, and the command it
    prints names the file by its absolute path (the notebook runs in notebooks/, `make` in the root)."""
    from studylib.analysis import ranking
    from studylib.analysis.weight_widgets import weight_panel

    scored = ranking.ScoredSet.from_frame(_frame(), sliders.SHORT_HEADS)
    base = load_weights("april_2023").vector(HEADS)
    monkeypatch.chdir(tmp_path)
    panel = weight_panel(scored, base, sliders.SHORT_HEADS, "april_2023", 10, "weights/slider_weights.yaml", ".")
    grid, buttons, _ = panel.children
    grid.children[0].value = 2.0  # favorited's slider moved
    buttons.children[0].click()
    written = tmp_path / "weights" / "slider_weights.yaml"
    assert f"make study WEIGHTS={written}" in capsys.readouterr().out  # outside a kernel the panel prints here
    assert list(load_weights(str(written)).vector(HEADS)) == [2.0, *base[1:]]

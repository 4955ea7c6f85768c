"""Chapter 5's offline sliders: the page's script computes what Python computes (three weight sets,
in headless Chromium with the network off, a preset chosen and a slider moved), and the weights it
exports are a file `make study WEIGHTS=` reads."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd
import pytest

from studylib import sliders
from studylib.scoring import HEADS, load_weights
from test_study import _browser, _chromium  # the report test's headless Chromium

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
    presets = _presets()
    lines = {"model": [[0.3, 0.010], [0.35, 0.014]], "oracle": [[0.32, 0.009], [0.37, 0.012]]}
    snippet = sliders.page_html(s, presets, "april_2023", 10, lines, "frontier: test")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", snippet), "the page must load nothing from the network"
    harness = """<script>
var root = document.getElementById("weight-sliders"), out = [];
function snap(label) {
  var href = root.querySelector("a.export").href;
  out.push({label: label, weights: root.sliders.weights(), metrics: root.sliders.metrics(),
            shown: root.querySelector('td[data-metric="utility"]').textContent, showing: root.sliders.showing(),
            yaml: decodeURIComponent(href.slice(href.indexOf(",") + 1)),
            frontier: root.querySelectorAll("polyline.frontier").length});
}
snap("base");
var select = root.querySelector("select.preset");
select.value = "equal_contribution"; select.dispatchEvent(new Event("change")); snap("preset");
var slider = root.querySelector('input[type=range][data-head="report_tweet_clicked"]');
slider.value = -40; slider.dispatchEvent(new Event("input")); snap("slider");
var pre = document.createElement("pre"); pre.id = "test-out"; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""
    page = tmp_path / "page.html"
    page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{snippet}{harness}</body></html>")
    dom = _browser(_chromium(), tmp_path / "profile", "--proxy-server=http://127.0.0.1:9",
                   "--virtual-time-budget=5000", "--dump-dom", page.as_uri()).stdout
    found = re.search(r'<pre id="test-out">(.*?)</pre>', dom, re.S)
    assert found, "the script did not run: " + dom[-2000:]
    snaps = {snap["label"]: snap for snap in json.loads(html.unescape(found.group(1)))}
    assert snaps["base"]["weights"] == pytest.approx(list(presets["april_2023"]), abs=0)
    assert snaps["preset"]["weights"] == pytest.approx(list(presets["equal_contribution"]), abs=0)
    assert snaps["slider"]["weights"][sliders.SHORT_HEADS.index("report_tweet_clicked")] != \
        snaps["preset"]["weights"][sliders.SHORT_HEADS.index("report_tweet_clicked")]
    assert [snaps[k]["showing"] for k in ("base", "preset", "slider")] == ["april_2023", "equal_contribution", ""]
    assert len({snaps[k]["shown"] for k in snaps}) == 3, "the numbers on the page did not move"
    assert all(snap["frontier"] == 2 for snap in snaps.values())
    for label, snap in snaps.items():
        expected = sliders.reference(s, np.array(snap["weights"]), presets["april_2023"], 10)
        for metric, value in expected.items():
            assert snap["metrics"][metric] == pytest.approx(value, rel=1e-9, abs=1e-12), (label, metric)
        # the exported file is a weight file: it reads back as exactly these weights
        path = tmp_path / f"{label}.yaml"
        path.write_text(snap["yaml"])
        assert list(load_weights(str(path)).vector(HEADS)) == snap["weights"], label


def test_frontier_is_read_when_present(tmp_path):
    assert sliders.frontier(tmp_path)[0] is None
    pd.DataFrame({"scorer": ["model", "model", "oracle"], "negative_scale": [2.0, 1.0, 1.0],
                  "positive": [0.1, 0.2, 0.3], "negative": [0.01, 0.02, 0.03]}).to_csv(tmp_path / sliders.FRONTIER_FILE)
    lines, _ = sliders.frontier(tmp_path)
    assert lines == {"model": [[0.2, 0.02], [0.1, 0.01]], "oracle": [[0.3, 0.03]]}

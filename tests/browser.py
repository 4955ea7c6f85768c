"""Headless Chromium for the tests that look at what a reader sees: the rendered report
(test_study.py) and chapter 5's offline sliders (test_sliders.py). A helper module, not a test
module, so that neither test file imports the other."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from studylib.analysis import sliders
from studylib.ranker.weights import HEADS, load_weights


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() == 0 and shutil.which("apt-get"):  # the test set-up installs Debian's package when missing
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], env=env,
                       capture_output=True)
        if not shutil.which("chromium"):
            subprocess.run(["apt-get", "update"], env=env, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], env=env,
                           capture_output=True)
    if shutil.which("chromium"):
        return shutil.which("chromium")
    pytest.fail("headless Chromium is needed: apt-get install -y chromium")


def browser(chromium: str, profile_dir: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={profile_dir}"]
    return subprocess.run([chromium, *flags, *args], capture_output=True, text=True, timeout=120)


# Appended to a page: the base weights on load, then a preset chosen and a slider moved through their
# DOM events, as a reader would; each state's weights, numbers and exported YAML go into <pre id=test-out>.
HARNESS = """<script>
(function () {
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
slider.value = 800; slider.dispatchEvent(new Event("input")); snap("slider");  // reports rewarded: the feed must move
var pre = document.createElement("pre"); pre.id = "test-out"; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
})();
</script>"""


def page_states(page: Path, profile_dir: Path) -> dict[str, dict]:
    """Open `page` (a copy with the harness, beside it so its assets resolve) in headless Chromium with
    the network off (every request goes to a dead proxy); the harness's states by label."""
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), f"{page.name}: loads something from the network"
    probe = page.with_name(page.stem + ".slider-test.html")
    probe.write_text(text.replace("</body>", HARNESS + "</body>") if "</body>" in text else text + HARNESS)
    try:
        dom = browser(chromium(), profile_dir, "--proxy-server=http://127.0.0.1:9", "--virtual-time-budget=5000",
                       "--dump-dom", probe.as_uri()).stdout
    finally:
        probe.unlink()
    found = re.search(r'<pre id="test-out"[^>]*>(.*?)</pre>', dom, re.S)
    assert found, f"{page.name}: the sliders' script did not run"
    return {state["label"]: state for state in json.loads(html.unescape(found.group(1)))}


def check_page(page: Path, tmp_path: Path) -> dict[str, dict]:
    """The numbers the page shows for three weight sets equal `sliders.reference` on the sample it
    embeds, they move, and each exported YAML reads back as exactly the weights shown."""
    sample, presets, base_name, k = sliders.embedded(page.read_text())
    states = page_states(page, tmp_path / "browser-profile")
    assert states["base"]["weights"] == list(presets[base_name])
    assert states["preset"]["weights"] == list(presets["equal_contribution"])
    report = sliders.SHORT_HEADS.index("report_tweet_clicked")
    assert states["slider"]["weights"][report] != states["preset"]["weights"][report]
    assert [states[s]["showing"] for s in ("base", "preset", "slider")] == [base_name, "equal_contribution", ""]
    assert len({state["shown"] for state in states.values()}) == 3, "the numbers on the page did not move"
    for label, state in states.items():
        expected = sliders.reference(sample, np.array(state["weights"]), presets[base_name], k)
        for metric, value in expected.items():
            assert state["metrics"][metric] == pytest.approx(value, rel=1e-9, abs=1e-12), (label, metric)
        path = tmp_path / f"{label}.yaml"  # the export is a weight file: it reads back as these weights
        path.write_text(state["yaml"])
        assert list(load_weights(str(path)).vector(HEADS)) == state["weights"], label
    return states

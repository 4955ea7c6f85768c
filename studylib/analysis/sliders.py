"""Weight sliders that work in the rendered report: offline, with no kernel.

Chapter 5's page embeds a sample of the held-out requests (each candidate's ten predicted
probabilities and ten true ones, float32, base64) and a small hand-written script: one slider per
head and a preset selector re-score the sample in the browser and recompute, over each request's
top k,

- the **true value** of the top k: the study's objective (the base weights applied to the true
  probabilities) summed over the k chosen candidates, beside the oracle's top k (ranked by that
  true value itself) and the base weights' top k;
- **Kendall's τ-b** with the base feed (the model's probabilities under the base weights);
- **positive** and **negative** engagement in the top k as true expected counts: the summed true
  probabilities of the eight positive heads, and of report plus negative feedback, and the
  negative share of all engagement;
- the point (positive, negative) on the plane, beside every preset's point and, where chapter 5's
  results hold `Result.FRONTIER` (columns scorer, negative_scale, positive, negative), the
  frontier traced there for the model and the oracle.

Means are over the sample's requests (τ over those where it is defined). `reference` computes the
same numbers in Python with the ranking module's top-k and τ helpers (a test holds the script to
them in headless Chromium), and a link exports the weights as a file `make study WEIGHTS=` reads
(`weights.load_weights`). No library, no network: one HTML fragment with inline SVG and JavaScript.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
import re

import numpy as np
import pandas as pd

from studylib.errors import StudyError
from studylib.analysis.ranking import TOP_K, kendall_tau, top_k_value
from studylib.data.requests import Requests
from studylib.schema import REQUEST_COLUMN, WEIGHT_PREFIX, WEIGHT_SUFFIX, short_name
from studylib.ranker.weights import HEADS
from studylib.outputs import Result

MAX_REQUESTS = 400  # 400 requests of 50 candidates: about 2.1 MB of base64 in the page
NEGATIVE_HEADS = ("negative_feedback_v2", "report_tweet_clicked")  # short names
SHORT_HEADS = tuple(short_name(h) for h in HEADS)  # the published order, as in the weight files
ROOT_ID = "weight-sliders"
EXPORT_NAME = "slider_weights.yaml"


@dataclass
class Sample:
    """Requests drawn from a scored table: rows grouped per request, heads in `SHORT_HEADS` order."""

    counts: np.ndarray  # [R] candidates of each request
    prob: np.ndarray  # [N, H] float32 predicted probabilities
    truth: np.ndarray  # [N, H] float32 true probabilities
    total_requests: int  # requests in the table it was drawn from

    @property
    def n_requests(self) -> int:
        return int(self.counts.size)

    def nbytes_embedded(self) -> int:
        return len(_b64(self.prob)) + len(_b64(self.truth))


def sample(frame: pd.DataFrame, max_requests: int = MAX_REQUESTS, seed: int = 0) -> Sample:
    """Up to `max_requests` whole requests of a scored table (seeded; all of them when fewer)."""
    missing = [c for h in SHORT_HEADS for c in (f"prob.{h}", f"true_prob.{h}") if c not in frame]
    if missing or REQUEST_COLUMN not in frame:
        raise StudyError(f"sliders: the scored table has no {(missing or [REQUEST_COLUMN])[0]} column")
    ids = frame[REQUEST_COLUMN].to_numpy()
    distinct = np.unique(ids)
    chosen = distinct
    if distinct.size > max_requests:
        chosen = np.sort(np.random.default_rng([int(seed), 0x511DE]).choice(distinct, max_requests, replace=False))
    rows = np.flatnonzero(np.isin(ids, chosen))
    rows = rows[np.argsort(ids[rows], kind="stable")]  # grouped per request, frame order within one
    _, counts = np.unique(ids[rows], return_counts=True)
    pick = lambda prefix: frame[[f"{prefix}.{h}" for h in SHORT_HEADS]].to_numpy(np.float32)[rows]  # noqa: E731
    return Sample(counts.astype(np.int64), np.ascontiguousarray(pick("prob")), np.ascontiguousarray(pick("true_prob")),
                  int(distinct.size))


def _weighted(matrix: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ_h matrix[:, h] · weights[h] in float64, head by head in order (the script sums the same way)."""
    total = np.zeros(matrix.shape[0])
    for h, w in enumerate(np.asarray(weights, np.float64)):
        total = total + matrix[:, h].astype(np.float64) * w
    return total


def _head_sum(matrix: np.ndarray, heads: tuple[str, ...]) -> np.ndarray:
    total = np.zeros(matrix.shape[0])
    for h in heads:
        total = total + matrix[:, SHORT_HEADS.index(h)].astype(np.float64)
    return total


POSITIVE_HEADS = tuple(h for h in SHORT_HEADS if h not in NEGATIVE_HEADS)


def reference(s: Sample, weights, base, k: int = TOP_K) -> dict[str, float]:
    """The page's numbers for `weights` (vectors in `SHORT_HEADS` order), computed in Python."""
    requests = Requests.from_ids(np.repeat(np.arange(s.n_requests), s.counts))
    mask = requests.mask
    grid = lambda flat: requests.gather(flat, fill=0.0)  # noqa: E731
    score, base_score = grid(_weighted(s.prob, weights)), grid(_weighted(s.prob, base))
    value = grid(_weighted(s.truth, base))
    positive, negative = grid(_head_sum(s.truth, POSITIVE_HEADS)), grid(_head_sum(s.truth, NEGATIVE_HEADS))
    utility, oracle = top_k_value(score, value, mask, k), top_k_value(value, value, mask, k)
    pos, neg = top_k_value(score, positive, mask, k), top_k_value(score, negative, mask, k)
    tau = kendall_tau(score, base_score, mask)
    return {"utility": float(utility.mean()), "oracle": float(oracle.mean()),
            "base_utility": float(top_k_value(base_score, value, mask, k).mean()),
            "regret": float((oracle - utility).mean()), "kendall_tau": float(np.nanmean(tau)),
            "positive": float(pos.mean()), "negative": float(neg.mean()),
            "negative_share": float(neg.sum() / (pos.sum() + neg.sum()))}


def frontier(results: Path) -> tuple[dict[str, list[list[float]]] | None, str]:
    """(scorer -> [[positive, negative], ...] by negative_scale, a note) from `Result.FRONTIER`."""
    path = Path(results) / Result.FRONTIER
    if not path.exists():
        return None, f"No {Result.FRONTIER} in this study's results: the plane shows the points alone."
    table = pd.read_csv(path)
    need = {"scorer", "negative_scale", "positive", "negative"}
    if not need <= set(table.columns):
        return None, f"{Result.FRONTIER} lacks the columns {sorted(need - set(table.columns))}: frontier not drawn."
    lines = {str(scorer): group.sort_values("negative_scale")[["positive", "negative"]].astype(float).values.tolist()
             for scorer, group in table.groupby("scorer", sort=True)}
    return lines, (f"Frontier: {Result.FRONTIER}, traced on every request of the held-out set by a family of weights "
                   "(one weight on every positive head, the negative heads scaled from 0 up). Weights that favour some "
                   "positive heads over others can sit beyond it; the points are this page's sample.")


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def page_html(s: Sample, presets: dict[str, np.ndarray], base_name: str, k: int = TOP_K,
              frontier_lines: dict[str, list[list[float]]] | None = None, frontier_note: str = "",
              data_set: str = "planted") -> str:
    """The HTML fragment (data, controls, SVG and script) for the sample and these weight sets;
    `presets` maps names to vectors in `SHORT_HEADS` order and holds `base_name`."""
    if base_name not in presets:
        raise StudyError(f"sliders: the base weights {base_name!r} are not among the presets")
    vectors = {name: [float(x) for x in np.asarray(v, np.float64)] for name, v in presets.items()}
    if any(len(v) != len(SHORT_HEADS) for v in vectors.values()):
        raise StudyError(f"sliders: every weight set needs {len(SHORT_HEADS)} weights")
    spans = np.maximum(1.0, 2.0 * np.abs(np.array(list(vectors.values()))).max(axis=0))
    data = {"heads": list(SHORT_HEADS), "keys": [WEIGHT_PREFIX + WEIGHT_SUFFIX[h] for h in HEADS],
            "positive": [SHORT_HEADS.index(h) for h in POSITIVE_HEADS],
            "negative": [SHORT_HEADS.index(h) for h in NEGATIVE_HEADS], "k": int(k),
            "counts": s.counts.tolist(), "prob": _b64(s.prob), "truth": _b64(s.truth),
            "presets": vectors, "base": base_name, "spans": spans.tolist(),
            "frontier": frontier_lines or {}, "export": EXPORT_NAME}
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    info = (f"{s.n_requests} of the {s.total_requests} requests of the {html.escape(data_set)} set "
            f"({int(s.counts.sum())} candidates), embedded in this page; top k = {int(k)}.")
    return (_TEMPLATE.replace("__ROOT__", ROOT_ID).replace("__DATA__", payload).replace("__INFO__", info)
            .replace("__BASE__", html.escape(base_name)).replace("__FRONTIER_NOTE__", html.escape(frontier_note))
            .replace("__K__", str(int(k))).replace("__SCRIPT__", _SCRIPT))


def embedded(page: str) -> tuple[Sample, dict[str, np.ndarray], str, int]:
    """(sample, weight sets, base name, k) that a page built by `page_html` embeds (for checks)."""
    found = re.search(r'<script type="application/json" class="slider-data">(.*?)</script>', page, re.S)
    if not found:
        raise StudyError("sliders: no embedded slider data in this page")
    data = json.loads(found.group(1))
    decode = lambda text: np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(-1, len(SHORT_HEADS))  # noqa: E731
    counts = np.array(data["counts"], np.int64)
    presets = {name: np.array(v, np.float64) for name, v in data["presets"].items()}
    return Sample(counts, decode(data["prob"]), decode(data["truth"]), -1), presets, data["base"], int(data["k"])


_TEMPLATE = """<div id="__ROOT__" class="studylib-sliders" style="font-size:0.9em">
<style>
#__ROOT__ table{border-collapse:collapse;margin:0.4em 0;width:100%;max-width:640px}
#__ROOT__ td,#__ROOT__ th{padding:2px 6px;text-align:left;vertical-align:middle}
#__ROOT__ td.head{overflow-wrap:anywhere;max-width:15em;line-height:1.15}
#__ROOT__ td.head small{color:#666}
#__ROOT__ td.num{text-align:right;font-variant-numeric:tabular-nums}
#__ROOT__ input[type=range]{width:100%;min-width:110px}
#__ROOT__ input[type=number]{width:6.5em}
#__ROOT__ svg.plane{width:100%;max-width:640px;height:auto}
#__ROOT__ .showing{font-weight:bold}
#__ROOT__ a.export{display:inline-block;padding:3px 10px;border:1px solid #888;border-radius:4px;text-decoration:none}
</style>
<script type="application/json" class="slider-data">__DATA__</script>
<p><b>Weights shown:</b> <span class="showing"></span>. Base weights of this run: <code>__BASE__</code>
(the true value below applies them to the true probabilities). __INFO__</p>
<p><label>Preset: <select class="preset"></select></label>
<button type="button" class="reset">back to __BASE__</button>
<a class="export" download="slider_weights.yaml" href="#">export these weights (YAML)</a></p>
<table class="controls"><thead><tr><th>head (base weight)</th><th colspan="2">weight</th></tr></thead><tbody></tbody></table>
<table class="results"><thead><tr><th>per request, top __K__ of the sample</th><th>these weights</th>
<th>base (__BASE__)</th><th>oracle</th></tr></thead><tbody></tbody></table>
<svg class="plane" viewBox="0 0 640 400" width="640" height="400" role="img" aria-label="positive against negative engagement in the top k"></svg>
<p style="font-size:0.85em">Plane: true expected positive engagements (the eight positive heads) against negative
ones (report + negative feedback) in each request's top __K__, means over the sample; grey: the presets, red: the
weights shown. __FRONTIER_NOTE__</p>
<script>__SCRIPT__</script>
</div>
"""

_SCRIPT = r"""
(function () {
  var root = document.getElementById("weight-sliders");
  var D = JSON.parse(root.querySelector("script.slider-data").textContent);
  function f32(text) {
    var s = atob(text), u = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
    return new Float32Array(u.buffer);
  }
  var P = f32(D.prob), T = f32(D.truth), H = D.heads.length, K = D.k, counts = D.counts, R = counts.length;
  var N = P.length / H, offsets = [], o = 0;
  for (var r = 0; r < R; r++) { offsets.push(o); o += counts[r]; }
  function weighted(M, w) {
    var out = new Float64Array(N);
    for (var i = 0; i < N; i++) { var acc = 0; for (var h = 0; h < H; h++) acc += M[i * H + h] * w[h]; out[i] = acc; }
    return out;
  }
  function headSum(M, heads) {
    var out = new Float64Array(N);
    for (var i = 0; i < N; i++) { var acc = 0; for (var j = 0; j < heads.length; j++) acc += M[i * H + heads[j]]; out[i] = acc; }
    return out;
  }
  var base = D.presets[D.base].slice();
  var baseScore = weighted(P, base), value = weighted(T, base);
  var posV = headSum(T, D.positive), negV = headSum(T, D.negative);
  function topk(score, off, n) {
    var idx = [];
    for (var j = 0; j < n; j++) idx.push(j);
    idx.sort(function (a, b) { var d = score[off + b] - score[off + a]; return d !== 0 ? d : a - b; });
    return idx.slice(0, Math.min(K, n));
  }
  function sign(x) { return x > 0 ? 1 : (x < 0 ? -1 : 0); }
  function compute(w) {
    var s = weighted(P, w), u = 0, or = 0, bu = 0, pos = 0, neg = 0, reg = 0, tauSum = 0, tauN = 0;
    for (var r = 0; r < R; r++) {
      var off = offsets[r], n = counts[r], top = topk(s, off, n), ru = 0, ro = 0, rb = 0, rp = 0, rn = 0;
      for (var j = 0; j < top.length; j++) { var i = off + top[j]; ru += value[i]; rp += posV[i]; rn += negV[i]; }
      var ot = topk(value, off, n), bt = topk(baseScore, off, n);
      for (j = 0; j < ot.length; j++) ro += value[off + ot[j]];
      for (j = 0; j < bt.length; j++) rb += value[off + bt[j]];
      u += ru; or += ro; bu += rb; pos += rp; neg += rn; reg += ro - ru;
      var num = 0, da = 0, db = 0;
      for (var a = 0; a < n; a++) for (var b = a + 1; b < n; b++) {
        var sa = sign(s[off + a] - s[off + b]), sb = sign(baseScore[off + a] - baseScore[off + b]);
        num += sa * sb; da += sa * sa; db += sb * sb;
      }
      if (da * db > 0) { tauSum += num / Math.sqrt(da * db); tauN += 1; }
    }
    return {utility: u / R, oracle: or / R, base_utility: bu / R, regret: reg / R,
            kendall_tau: tauN ? tauSum / tauN : NaN, positive: pos / R, negative: neg / R,
            negative_share: neg / (pos + neg)};
  }
  function yamlNumber(x) {
    var s = String(x);
    if (!/[.eE]/.test(s)) s += ".0";
    else if (/e/.test(s) && s.indexOf(".") < 0) s = s.replace("e", ".0e");
    return s;
  }
  var w = base.slice(), showing = D.base, last = null;
  var select = root.querySelector("select.preset"), tbody = root.querySelector("table.controls tbody");
  Object.keys(D.presets).forEach(function (name) {
    var opt = document.createElement("option"); opt.value = name; opt.textContent = name; select.appendChild(opt);
  });
  var custom = document.createElement("option"); custom.value = ""; custom.textContent = "(your weights)";
  select.appendChild(custom);
  var ranges = [], numbers = [];
  D.heads.forEach(function (head, h) {
    var tr = document.createElement("tr"), span = D.spans[h];
    tr.innerHTML = '<td class="head">' + head + " <small>(" + Number(base[h].toPrecision(4)) + ")</small></td><td><input type=range></td>" +
                   "<td><input type=number step=any></td>";
    var range = tr.querySelector("input[type=range]"), num = tr.querySelector("input[type=number]");
    range.min = -span; range.max = span; range.step = span / 400; range.dataset.head = head;
    num.dataset.head = head;
    range.addEventListener("input", function () { w[h] = Number(range.value); num.value = w[h]; changed(""); });
    num.addEventListener("change", function () {
      var x = Number(num.value); if (num.value === "" || !isFinite(x)) { num.value = w[h]; return; }
      w[h] = x; range.value = x; changed("");
    });
    ranges.push(range); numbers.push(num); tbody.appendChild(tr);
  });
  function setWeights(v, name) {
    w = v.slice();
    for (var h = 0; h < H; h++) { ranges[h].value = w[h]; numbers[h].value = w[h]; }
    changed(name);
  }
  select.addEventListener("change", function () { if (select.value) setWeights(D.presets[select.value], select.value); });
  root.querySelector("button.reset").addEventListener("click", function () { setWeights(base, D.base); });
  function yamlText() {
    var lines = ["# " + D.export.replace(".yaml", "") + ": weights from chapter 5's sliders" +
                 (showing ? " (preset " + showing + ")" : "") + "; run: make study WEIGHTS=" + D.export];
    for (var h = 0; h < H; h++) lines.push(D.keys[h] + ": " + yamlNumber(w[h]));
    return lines.join("\n") + "\n";
  }
  var rows = [["true value of the top k (base weights on the true probabilities)", "utility", "base_utility", "oracle"],
              ["regret against the oracle's top k", "regret", null, null],
              ["Kendall's τ with the base feed", "kendall_tau", null, null],
              ["positive engagements in the top k (true expected count)", "positive", null, null],
              ["negative engagements in the top k (reports + negative feedback)", "negative", null, null],
              ["negative share of all engagements in the top k", "negative_share", null, null]];
  var points = {};
  Object.keys(D.presets).forEach(function (name) { points[name] = compute(D.presets[name]); });
  function fmt(x) { return isFinite(x) ? Number(x).toPrecision(4) : "–"; }
  function draw(m) {
    var svg = root.querySelector("svg.plane"), W = 640, Hh = 400, L = 70, B = 50, all = [];
    Object.keys(D.frontier).forEach(function (k) { D.frontier[k].forEach(function (p) { all.push(p); }); });
    Object.keys(points).forEach(function (k) { all.push([points[k].positive, points[k].negative]); });
    all.push([m.positive, m.negative]);
    var x0 = Math.min.apply(null, all.map(function (p) { return p[0]; })), x1 = Math.max.apply(null, all.map(function (p) { return p[0]; }));
    var y0 = Math.min.apply(null, all.map(function (p) { return p[1]; })), y1 = Math.max.apply(null, all.map(function (p) { return p[1]; }));
    var dx = (x1 - x0) || 1, dy = (y1 - y0) || 1; x0 -= dx * 0.08; x1 += dx * 0.08; y0 -= dy * 0.08; y1 += dy * 0.08;
    function X(v) { return L + (v - x0) / (x1 - x0) * (W - L - 20); }
    function Y(v) { return Hh - B - (v - y0) / (y1 - y0) * (Hh - B - 20); }
    var out = ['<rect x="' + L + '" y="20" width="' + (W - L - 20) + '" height="' + (Hh - B - 20) + '" fill="none" stroke="#999"/>'];
    out.push('<text x="' + (W / 2) + '" y="' + (Hh - 10) + '" text-anchor="middle" font-size="12">positive engagements in the top ' + K + ' (per request)</text>');
    out.push('<text transform="translate(16,' + (Hh / 2) + ') rotate(-90)" text-anchor="middle" font-size="12">negative engagements in the top ' + K + '</text>');
    [[x0, "start"], [x1, "end"]].forEach(function (t) { out.push('<text x="' + X(t[0]) + '" y="' + (Hh - B + 15) + '" font-size="10" text-anchor="' + t[1] + '">' + fmt(t[0]) + '</text>'); });
    [y0, y1].forEach(function (t) { out.push('<text x="' + (L - 4) + '" y="' + Y(t) + '" font-size="10" text-anchor="end">' + fmt(t) + '</text>'); });
    var colours = {model: "#1f77b4", oracle: "#2ca02c"};
    Object.keys(D.frontier).forEach(function (k) {
      var pts = D.frontier[k].map(function (p) { return X(p[0]) + "," + Y(p[1]); }).join(" ");
      out.push('<polyline class="frontier" points="' + pts + '" fill="none" stroke="' + (colours[k] || "#555") + '" stroke-width="1.5"/>');
      var e = D.frontier[k][D.frontier[k].length - 1];
      var end = X(e[0]) > W * 0.7;
      out.push('<text x="' + (X(e[0]) + (end ? -4 : 4)) + '" y="' + (Y(e[1]) + 12) + '" font-size="10" fill="' + (colours[k] || "#555") + '"' +
               (end ? ' text-anchor="end"' : "") + '>frontier (' + k + ')</text>');
    });
    Object.keys(points).forEach(function (k) {
      var p = points[k];
      out.push('<circle cx="' + X(p.positive) + '" cy="' + Y(p.negative) + '" r="4" fill="#999"/>');
      var right = X(p.positive) > W * 0.7;
      out.push('<text x="' + (X(p.positive) + (right ? -6 : 6)) + '" y="' + (Y(p.negative) - 4) + '" font-size="10" fill="#666"' +
               (right ? ' text-anchor="end"' : "") + '>' + k + '</text>');
    });
    out.push('<circle class="current" cx="' + X(m.positive) + '" cy="' + Y(m.negative) + '" r="6" fill="#d62728" fill-opacity="0.8"/>');
    svg.innerHTML = out.join("");
  }
  function changed(name) {
    showing = name;
    select.value = name;
    var m = compute(w), b = points[D.base];
    last = m;
    root.querySelector(".showing").textContent = !name ? "your weights (moved from a preset)" :
      (name === D.base ? name + ", this run's base weights" : "preset " + name);
    var body = root.querySelector("table.results tbody");
    body.innerHTML = rows.map(function (row) {
      return "<tr><td>" + row[0] + '</td><td class="num" data-metric="' + row[1] + '">' + fmt(m[row[1]]) +
             '</td><td class="num">' + fmt(b[row[1]]) + '</td><td class="num">' +
             (row[3] ? fmt(m[row[3]]) : "") + "</td></tr>";
    }).join("");
    root.querySelector("a.export").href = "data:text/yaml;charset=utf-8," + encodeURIComponent(yamlText());
    draw(m);
  }
  root.sliders = {weights: function () { return w.slice(); }, metrics: function () { return last; },
                  yaml: yamlText, showing: function () { return showing; }};
  setWeights(base, D.base);
})();
"""


__all__ = ["MAX_REQUESTS", "NEGATIVE_HEADS", "POSITIVE_HEADS", "ROOT_ID", "SHORT_HEADS", "Sample",
           "embedded", "frontier", "page_html", "reference", "sample"]

"""Live weight sliders for a person running chapter 5 in JupyterLab: one slider per head, the
ranking's metrics against the base weights and the score distribution redrawn on release, and a
button that writes the slider weights as a file for `make study WEIGHTS=...`.

The report's sliders are `studylib.analysis.sliders` (plain HTML, no kernel); these need a live
kernel, so ipywidgets and pyplot are imported only when the panel is built (a batch run never
builds it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studylib.analysis import ranking
from studylib.ranker.weights import save_weights


def _slider(widgets, head: str, weight: float):
    span = 4 * abs(float(weight)) or 1.0
    # the full label name: good_clicked_convo_desc_v2 and its sibling differ only at the end
    return widgets.FloatSlider(value=float(weight), min=-span, max=span, step=span / 80, description=head,
                               continuous_update=False, readout_format=".3g",
                               layout=widgets.Layout(width="640px"), style={"description_width": "320px"})


def weight_panel(scored: ranking.ScoredSet, base: np.ndarray, short_heads: tuple[str, ...], primary: str,
                 top_k: int, export_path: Path, workdir: Path):
    """The panel (an ipywidgets VBox) over `scored`, starting at the weights `base` (named `primary`)."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt


    overlap = f"top{top_k}_overlap"
    base_row = ranking.summarize(ranking.ranking_metrics(scored, base, base[None], top_k)).iloc[0]
    sliders = {head: _slider(widgets, head, w) for head, w in zip(short_heads, base)}

    def redraw(**values):
        w = np.array([values[h] for h in short_heads])
        m = ranking.summarize(ranking.ranking_metrics(scored, base, w[None], top_k)).iloc[0]
        print(f"Kendall's τ with {primary}: {m['kendall_tau']:.3f}   top-{top_k} overlap: {m[overlap]:.3f}   "
              + "   ".join(f"{k}: {m[k]:.3f} (base {base_row[k]:.3f})" for k in ranking.VALUE_HEADS if k in m))
        score = scored.scores(w)[scored.requests.mask]
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.hist(score, bins=60, color="C0")
        ax.set_xlabel("score (unitless)")
        ax.set_ylabel("candidates")
        ax.set_title("Score distribution with the slider weights")
        plt.show()

    out = widgets.interactive_output(redraw, sliders)
    # absolute: the command printed below then works from any folder (the notebook's is notebooks/)
    export_path, workdir = Path(export_path).resolve(), Path(workdir).resolve()
    shown = export_path.relative_to(workdir) if export_path.is_relative_to(workdir) else export_path
    export = widgets.Button(description=f"save as {shown}", layout=widgets.Layout(width="420px"))
    saved = widgets.Output()

    def save(_):
        save_weights({h: s.value for h, s in sliders.items()}, export_path, export_path.stem)
        with saved:
            saved.clear_output()
            print(f"wrote {export_path}; run: make study WEIGHTS={export_path}")

    export.on_click(save)
    grid = widgets.GridBox(list(sliders.values()), layout=widgets.Layout(grid_template_columns="repeat(auto-fill, 660px)"))
    return widgets.VBox([grid, widgets.HBox([export, saved]), out])


__all__ = ["weight_panel"]

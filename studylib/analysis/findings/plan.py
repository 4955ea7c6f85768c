"""The page: one multiplicity plan over every finding's decisions, and the computed abstract."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studylib.io import write_json
from studylib.stats import MIN_POSITIVES, holm
from studylib.analysis.findings.core import _ci, _named, _plain, excludes_zero, load
from studylib.analysis.findings.decisions import PRIMARY_ENDPOINTS, _is_number, _primary, decisions
from studylib.outputs import FINDINGS


PAGE_ALPHA = 0.05
# Holm, not Benjamini–Hochberg: the page's decisions share users, seeds and models (dependence BH's
# positive-dependence condition is not shown to cover), and a reader takes each declared difference
# as a claim of its own, so the family-wise error is the rate that matters. One family: every
# decision on the page.
PAGE_ADJUSTMENT = "Holm"
def page_plan(found: dict[str, dict] | list[dict], alpha: float | None = None) -> dict[str, dict]:
    """Every finding of a run with the page-wide plan applied: its decisions (`decisions`), all of the
    page's in one Holm family, each with its adjusted p; the finding's `endpoint` (primary or
    secondary), `p_value` and `p_how` (its smallest decision p, and how it was had), `p_adjusted`,
    `adjustment` and `adjusted_verdict` (which of its declared differences, p < alpha before the
    adjustment, lapse after it). Findings without a test keep `p_value` None and say so. `alpha`: the
    profile's (parameter `alpha`); None keeps the one the findings were last planned with, else PAGE_ALPHA.
    Each finding records it (`alpha`), so every later reading of the page uses the same."""
    found = {f["id"]: f for f in (found.values() if isinstance(found, dict) else found)}
    if alpha is None:
        alpha = next((f["alpha"] for f in found.values() if "alpha" in f), PAGE_ALPHA)
    tests = {i: decisions(f) for i, f in found.items()}
    flat = [d for i in sorted(tests) for d in tests[i]]
    adjusted = holm(np.array([d["p"] for d in flat])) if flat else np.array([])
    for d, p in zip(flat, adjusted):
        d["p_adjusted"] = float(p)
    out = {}
    for i, f in found.items():
        ds = tests[i]
        for d in ds:
            d["primary"] = _primary(i, d["name"])
        f = {**f, "decisions": ds, "alpha": alpha, "endpoint": "primary" if i in PRIMARY_ENDPOINTS else "secondary",
             "adjustment": f"{PAGE_ADJUSTMENT} over the page's {len(flat)} decisions, α = {alpha:g}"}
        if not ds:
            f.update(p_value=None, p_how="no test: a threshold rule", p_adjusted=None,
                     adjusted_verdict="no test to adjust (a threshold rule)")
        else:
            best = min(ds, key=lambda d: d["p"])
            declared = [d for d in ds if (excludes_zero(d["low"], d["high"]) if "low" in d else d["p"] < alpha)]
            lapsed = [d["name"] for d in declared if d["p_adjusted"] >= alpha]
            f.update(p_value=best["p"], p_how=best["how"], p_adjusted=min(d["p_adjusted"] for d in ds))
            if not declared:
                f["adjusted_verdict"] = "no difference declared before the adjustment"
            elif not lapsed:
                f["adjusted_verdict"] = (f"holds: {'its' if len(declared) == 1 else f'all {len(declared)}'} declared "
                                         f"difference{'s' if len(declared) > 1 else ''} survive{'s' if len(declared) == 1 else ''} "
                                         f"page-wide {PAGE_ADJUSTMENT}")
            else:
                f["adjusted_verdict"] = (f"{len(lapsed)} of {len(declared)} declared differences lapse under page-wide "
                                         f"{PAGE_ADJUSTMENT}: {', '.join(lapsed)}")
            f["lapsed"] = lapsed  # the differences the finding's own text declares that the page cannot
        out[i] = _plain(f)
    return out


def apply_page_plan(results: str | Path, alpha: float | None = None) -> dict[str, dict]:
    """`page_plan` over results/findings.json, written back (so the file carries every finding's p-value,
    adjusted p and adjusted verdict); returns the findings by id."""
    planned = page_plan(load(results), alpha)
    write_json(Path(results) / FINDINGS, sorted(planned.values(), key=lambda f: (f["chapter"], f["id"])))
    return planned




ORIGINAL_CANDIDATES = 1500  # candidates the original ranks per timeline request (the published description)


def _page_wide(f: dict) -> str:
    """Whether a primary finding's endpoint differences survive the page-wide plan."""
    alpha = f.get("alpha", PAGE_ALPHA)
    declared = [d for d in f.get("decisions", []) if d.get("primary") and d["p"] < alpha]
    if not declared:
        return ""
    lapsed = [d["name"] for d in declared if d["p_adjusted"] >= alpha]
    if not lapsed:
        return f" (each declared difference survives page-wide {PAGE_ADJUSTMENT})"
    return f" ({len(lapsed)} of {len(declared)} lapse under page-wide {PAGE_ADJUSTMENT}: {', '.join(lapsed)})"


def _endpoint_sentence(f: dict) -> str:
    """A primary finding without a tailored sentence: its primary decisions with their intervals."""
    ds = [d for d in f.get("decisions", []) if d.get("primary") and "low" in d]
    said = "; ".join(f"{d['name'].replace('_', ' ')} {d['estimate']:+.3g} ({_ci(d['low'], d['high'], '+.3g')})" for d in ds)
    return f"`{f['id']}`: {said or f.get('verdict') or 'no interval'}{_page_wide(f)}."


def abstract(found: dict[str, dict], params: dict) -> str:
    """The report's opening paragraphs from the run's primary findings (`page_plan` applied) and its
    parameters: one answer per question of the study, each with its interval and page-wide verdict,
    and the limits the run's own settings put on them. Questions without their finding are left out."""
    found = page_plan(found) if found and "adjusted_verdict" not in next(iter(found.values())) else found
    answers = []
    world = found.get("personal_signal")
    if world is not None:
        n = world["numbers"]
        answers.append(f"In the planted world of this run, {100 * n['personal_share']:.0f} % "
                       f"({_ci(100 * n['personal_share_low'], 100 * n['personal_share_high'], '.0f')}) of what ranking a "
                       f"top {n['k']} is worth needs knowing the user: the rest a ranking by each tweet's average "
                       f"engagement (the popularity oracle) already gets.")
    reg = found.get("model_vs_oracle_regret")
    if reg is not None:
        n = reg["numbers"]
        sentence = (f"Ranked by its scores with the `{n['weights']}` weights, the Heavy Ranker's feed carries a regret of "
                    f"{n['regret']:.3g} per request against the oracle ({_ci(n['regret_low'], n['regret_high'], '.3g')}"
                    + (f"; the oracle's top {params.get('top_k', 10)} carries {n['oracle_utility']:.3g}"
                       if _is_number(n.get("oracle_utility")) else "") + "), "
                    f"{100 * n['gain_share']:.0f} % ({_ci(100 * n['gain_share_low'], 100 * n['gain_share_high'], '.0f')}) "
                    f"of what the oracle gains over a random order")
        if _is_number(n.get("model_minus_popularity")):
            sentence += (f"; against the popularity oracle it gains {n['model_minus_popularity']:+.3g} per request "
                         f"({_ci(n['model_minus_popularity_low'], n['model_minus_popularity_high'], '+.3g')}, paired), "
                         f"{100 * n['popularity_gain_share']:.0f} % of the oracle's gain over popularity")
        answers.append(sentence + f"{_page_wide(reg)}.")
    pos = found.get("positional_feed")
    if pos is not None and _is_number(pos["numbers"].get("positional_minus_by_name_utility")):
        n = pos["numbers"]
        answers.append(f"Paired with its labels by position, as the published configuration does, the ranker's top of the "
                       f"feed changes in true value by {n['positional_minus_by_name_utility']:+.3g} per request against "
                       f"pairing them by name ({_ci(n['positional_minus_by_name_low'], n['positional_minus_by_name_high'], '+.3g')})"
                       f"{_page_wide(pos)}.")
    rel = found.get("twhin_link_prediction")
    if rel is not None:
        n = rel["numbers"]
        if "trained_above_popularity" in n:  # the finding's own pair-by-pair comparison with popularity
            above = [r for r in n["trained_above_popularity"].split(", ") if r]
            below = [r for r in n["trained_below_popularity"].split(", ") if r]
            answers.append(f"TwHIN's trained embeddings rank held-out engagements they have not seen in training better "
                           f"than popularity on {_named(above)} "
                           f"and worse on {_named(below)} of {n['relations']}, by the paired 95 % intervals of the MRR "
                           f"difference over users{_page_wide(rel)}.")
        if "node_bias_behind_popularity" in n:  # the variant that can carry each relation's own popularity
            ahead = [r for r in n["node_bias_ahead_of_popularity"].split(", ") if r]
            behind = [r for r in n["node_bias_behind_popularity"].split(", ") if r]
            tests = {d["name"]: d for d in rel.get("decisions", [])}
            lapsed = [r for r in behind if tests.get(f"{r}_node_bias_over_popularity", {}).get("p_adjusted", 0) >= rel.get("alpha", PAGE_ALPHA)]
            answers.append(f"With a learned bias per entity and relation, started at popularity, they are better on "
                           f"{_named(ahead)} and worse on {_named(behind)}"
                           + (f" (on {', '.join(lapsed)} the shortfall does not survive page-wide {PAGE_ADJUSTMENT})"
                              if lapsed else "") + ".")
    for i in PRIMARY_ENDPOINTS:
        if i in found and i not in ("twhin_link_prediction", "positional_feed", "model_vs_oracle_regret"):
            answers.append(_endpoint_sentence(found[i]))
    get = lambda name, default=0: params.get(name, default)  # noqa: E731
    candidates = get("candidates", 50)
    limits = [f"These answers hold for the planted world this run generated (scenario `{get('scenario', '?')}`, base rates "
              f"scaled ×{get('rate_scale', 1):g}), not for Twitter's data, which is not public",
              f"{get('train_examples'):,} training examples and {get('steps'):,} steps with {get('seeds', 1)} seed"
              f"{'s' if get('seeds', 1) != 1 else ''}"]
    conv = found.get("convergence")
    if conv is not None and conv.get("verdict"):
        limits[-1] += f" (convergence: *{conv['verdict']}*)"
    limits.append(f"{candidates} candidates per request against the original's about {ORIGINAL_CANDIDATES:,}, so a top "
                  f"{get('top_k', 10)} is {100 * get('top_k', 10) / max(1, candidates):.0f} % of the pool here")
    hq = found.get("head_quality")
    if hq is not None and _is_number(hq["numbers"].get("evaluable_heads")) and _is_number(hq["numbers"].get("heads")):
        limits.append(f"{hq['numbers']['evaluable_heads']} of {hq['numbers']['heads']} heads have enough held-out "
                      f"positives ({MIN_POSITIVES}) to be evaluated")
    primary = [i for i in PRIMARY_ENDPOINTS if i in found]
    lapsed = [i for i in found if "lapse" in (found[i].get("adjusted_verdict") or "")]
    plan = (f"Primary endpoints: {', '.join(f'`{i}`' for i in primary)}; every verdict on the Findings page is read "
            f"under one {PAGE_ADJUSTMENT} plan over the page, under which {len(lapsed)} finding"
            f"{'s' if len(lapsed) != 1 else ''} lose{'s' if len(lapsed) == 1 else ''} a declared difference.")
    return ("## Abstract\n\n" + " ".join(answers) + ("\n\n" if answers else "") + plan
            + "\n\n**Limits.** " + "; ".join(limits) + ".\n\n")

"""The page: one multiplicity plan over every finding's decisions, and the computed abstract."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from studylib.io import write_json
from studylib.stats import MIN_POSITIVES
from studylib.analysis.findings.core import _ci, _named, _plain, excludes_zero, load, listed, p_is, percent_digits
from scipy.stats import false_discovery_control

from studylib.analysis.findings.decisions import PRIMARY_ENDPOINTS, _is_number, decisions
from studylib.analysis.findings.hypotheses import FAMILY, decided_verdict, run_family
from studylib.analysis.findings.verdicts import PART_JOIN
from studylib.outputs import FINDINGS


PAGE_ALPHA = 0.05
# Two families. The primary one is the pre-registered hypotheses (`hypotheses.FAMILY`, one per question,
# directional, their nulls the verdicts' rules), under Holm: a reader takes each as a claim of its own,
# so the family-wise error is what matters there. Every other decision on the page (each interval's
# difference from zero, each test, each TOST) is secondary, under Benjamini–Hochberg: many of them
# describe one result from several sides, and what a reader needs is that few of the differences the
# page declares are false. A secondary result never changes a primary decision.
PAGE_ADJUSTMENT = "Holm"
SECONDARY_ADJUSTMENT = "Benjamini–Hochberg"


def page_plan(found: dict[str, dict] | list[dict], alpha: float | None = None) -> dict[str, dict]:
    """Every finding of a run with the page's plan applied. Each finding holding a primary hypothesis
    gets `hypotheses` (statement, estimate, one-sided p, Holm-adjusted p, rejected) and its verdict read
    through `hypotheses.decided_verdict` (`verdict_before_plan` keeps the chapter's; the text says when
    they differ). Every finding gets its secondary decisions (`decisions`, each with its BH-adjusted p),
    `endpoint` (primary or secondary), `p_value` and `p_how` (its smallest decision p), `p_adjusted`,
    `adjustment` and `adjusted_verdict` (which of its declared differences, p < alpha before the
    adjustment, lapse after it). `alpha`: the profile's (parameter `alpha`); None keeps the one the
    findings were last planned with, else PAGE_ALPHA. Each finding records it (`alpha`)."""
    found = {f["id"]: f for f in (found.values() if isinstance(found, dict) else found)}
    if alpha is None:
        alpha = next((f["alpha"] for f in found.values() if "alpha" in f), PAGE_ALPHA)
    as_computed = {i: {**f, "verdict": f.get("verdict_before_plan", f.get("verdict"))} for i, f in found.items()}
    family = run_family(as_computed, alpha)
    tests = {i: decisions(f) for i, f in as_computed.items()}
    flat = [d for i in sorted(tests) for d in tests[i]]
    adjusted = false_discovery_control([d["p"] for d in flat], method="bh") if flat else np.array([])
    for d, p in zip(flat, adjusted):
        d["p_adjusted"] = float(p)
    tested_family = sum(r["p"] is not None for r in family.values())
    out = {}
    for i, f in as_computed.items():
        ds = tests[i]
        own = {name: r for name, r in family.items() if r["finding"] == i}
        primary = bool(own)
        f = {**f, "decisions": ds, "alpha": alpha, "endpoint": "primary" if primary else "secondary",
             "adjustment": (f"primary: {PAGE_ADJUSTMENT} over the {tested_family} tested hypotheses of the "
                            f"pre-registered family; " if primary else "")
             + f"secondary: {SECONDARY_ADJUSTMENT} over the page's {len(flat)} decisions, α = {alpha:g}"}
        if primary:
            f["hypotheses"] = [{"name": name, **r} for name, r in own.items()]
        lapsed_now = [d["name"] for d in ds if d["p_adjusted"] >= alpha]
        decided = decided_verdict(i, f.get("verdict"), family, lapsed_now)
        if decided != f.get("verdict"):
            f["verdict_before_plan"] = f.get("verdict")
            f["text"] = f.get("text", "") + _lapsed_sentence(own, decided, f["verdict_before_plan"])
            f["verdict"] = decided
        if not ds:
            f.update(p_value=None, p_how="no test: a threshold rule", p_adjusted=None,
                     adjusted_verdict="no test to adjust (a threshold rule)")
        else:
            best = min(ds, key=lambda d: d["p"])
            declared = [d for d in ds if (excludes_zero(d["low"], d["high"]) if "low" in d else d["p"] < alpha)]
            lapsed = [d["name"] for d in declared if d["p_adjusted"] >= alpha]
            f.update(p_value=best["p"], p_how=best["how"], p_adjusted=min(d["p_adjusted"] for d in ds))
            if not declared:
                f["adjusted_verdict"] = "nothing to adjust: its secondary tests declare no difference"
            elif not lapsed:
                f["adjusted_verdict"] = (f"holds: {'its' if len(declared) == 1 else f'all {len(declared)}'} declared "
                                         f"difference{'s' if len(declared) > 1 else ''} survive{'s' if len(declared) == 1 else ''} "
                                         f"page-wide {SECONDARY_ADJUSTMENT}")
            else:
                f["adjusted_verdict"] = (f"{len(lapsed)} of {len(declared)} declared differences lapse under page-wide "
                                         f"{SECONDARY_ADJUSTMENT}: {', '.join(lapsed)}")
            f["lapsed"] = lapsed  # the differences the finding's own text declares that the page cannot
        out[i] = _plain(f)
    return out


def _lapsed_sentence(own: dict[str, dict], verdict: str, before: str | None) -> str:
    """Why the page's plan changed a finding's verdict: a primary hypothesis whose claim the verdict made
    was not rejected, or an equivalence test that lapsed under the secondary adjustment."""
    claims = {h.name: h.claims for h in FAMILY}
    stated = (before or "").split(PART_JOIN)
    reasons = [f"under the pre-registered primary family, {r['statement']}: not rejected"
               + (f" (Holm-adjusted one-sided p = {r['p_adjusted']:.2g})" if r["p_adjusted"] is not None else
                  " (not tested: its numbers are missing)")
               for name, r in own.items() if not r["rejected"] and set(claims[name]) & set(stated)]
    if len(reasons) < sum(a != b for a, b in zip(stated, verdict.split(PART_JOIN))):
        reasons.append(f"under the page's {SECONDARY_ADJUSTMENT} adjustment its equivalence test no longer shows "
                       "the absence")
    return (f" **The page's plan changes this verdict** from *{before}*: {'; '.join(reasons)}. The sentences above "
            f"hold only before that adjustment; the verdict reads *{verdict}*.")


def apply_page_plan(results: str | Path, alpha: float | None = None) -> dict[str, dict]:
    """`page_plan` over results/findings.json, written back (so the file carries every finding's p-value,
    adjusted p and adjusted verdict); returns the findings by id."""
    planned = page_plan(load(results), alpha)
    write_json(Path(results) / FINDINGS, sorted(planned.values(), key=lambda f: (f["chapter"], f["id"])))
    return planned




ORIGINAL_CANDIDATES = 1500  # candidates the original ranks per timeline request (the published description)


def _page_wide(f: dict) -> str:
    """What the pre-registered family decided about a primary finding's hypotheses, for the abstract."""
    said = []
    for h in f.get("hypotheses", []):
        if h["p"] is None:
            said.append("its pre-registered test could not be run")
        elif not h["rejected"] and h.get("all_estimates_at_least_zero") is False and h["p_adjusted"] < f.get("alpha", PAGE_ALPHA):
            said.append(f"pre-registered: *{h['claim']}* — not shown: within the margin ({PAGE_ADJUSTMENT}-adjusted "
                        f"{p_is(h['p_adjusted'])}), but below popularity by its point estimate on some relation")
        else:
            said.append(f"pre-registered: *{h['claim']}* — {'shown' if h['rejected'] else 'not shown'}, "
                        f"{PAGE_ADJUSTMENT}-adjusted {p_is(h['p_adjusted'])}")
    return f" ({'; '.join(said)})" if said else ""


def _survives(f: dict, name: str) -> bool:
    """Whether a finding's secondary decision `name` is declared after the page's adjustment."""
    d = next((d for d in f.get("decisions", []) if d["name"] == name), None)
    return d is not None and d.get("p_adjusted", 1.0) < f.get("alpha", PAGE_ALPHA)


def _endpoint_sentence(f: dict) -> str:
    """A primary finding without a tailored sentence: its hypotheses' estimates with their intervals."""
    said = "; ".join(f"{h['name'].replace('_', ' ')} {h['estimate']:+.3g}"
                     + (f" ({_ci(h['low'], h['high'], '+.3g')})" if "low" in h else "")
                     for h in f.get("hypotheses", []) if h.get("estimate") is not None)
    return f"`{f['id']}`: {said or f.get('verdict') or 'no estimate'}{_page_wide(f)}."


# The abstract's interval-bearing numbers, (finding, number) with `<number>_low/_high` beside it (the personal
# share and the shift's share are shares, shown in %), which a smaller study compares with the converged one.
HEADLINE_NUMBERS = (("personal_signal", "personal_share"), ("model_vs_oracle_regret", "gain_share"),
                    ("model_vs_oracle_regret", "seed_user_model_minus_popularity"),
                    ("positional_feed", "positional_minus_by_name_utility"),
                    ("regret_decomposition", "shift_share"), ("optimal_weights_gain", "model_gain"))
_INTERVAL_OF = {"positional_minus_by_name_utility": "positional_minus_by_name"}  # its bounds' stem


def converged_outside(found: dict[str, dict], converged: dict[str, dict]) -> dict[tuple[str, str], float]:
    """(finding, number) -> the converged study's value, for each abstract number of `found` whose own 95 %
    interval does not hold that value (both studies must have the number)."""
    out = {}
    for finding_id, key in HEADLINE_NUMBERS:
        here = found.get(finding_id, {}).get("numbers", {})
        there = converged.get(finding_id, {}).get("numbers", {}).get(key)
        stem = _INTERVAL_OF.get(key, key)
        low, high = here.get(f"{stem}_low"), here.get(f"{stem}_high")
        if all(_is_number(v) for v in (here.get(key), there, low, high)) and not low <= there <= high:
            out[(finding_id, key)] = float(there)
    return out


def _apart(value: float, bounds: list[float], fmt: str) -> str:
    """`value` in `fmt` (".0f", "+.3g", ...), with more digits while it would print as one of the
    interval's printed bounds (a converged value of 4.4 beside an interval "-5 to 4" reads 4.4, not 4)."""
    sign, places, kind = re.fullmatch(r"(\+?)\.(\d+)([fg])", fmt).groups()
    printed_bounds = {f"{b:{fmt}}" for b in bounds}
    for places_now in range(int(places), int(places) + 4):
        text = f"{value:{sign}.{places_now}{kind}}"
        if text not in printed_bounds:
            break
    return text


def abstract(found: dict[str, dict], params: dict, converged: tuple[str, dict | None] | None = None) -> str:
    """The report's opening paragraphs from the run's primary findings (`page_plan` applied) and its
    parameters: one answer per question of the study, each with its interval and page-wide verdict,
    and the limits the run's own settings put on them. Questions without their finding are left out.

    `converged` = (its name, its findings) of the converged study: each number whose interval here does
    not hold the converged value says so beside it; findings None: made in another world, not compared."""
    found = page_plan(found) if found and "adjusted_verdict" not in next(iter(found.values())) else found
    outside = converged_outside(found, converged[1]) if converged is not None and converged[1] is not None else {}

    def mark(finding_id: str, key: str, scale: float = 1.0, fmt: str = ".3g") -> str:
        value = outside.get((finding_id, key))
        if value is None:
            return ""
        stem = _INTERVAL_OF.get(key, key)
        bounds = [scale * found[finding_id]["numbers"][f"{stem}_{end}"] for end in ("low", "high")]
        return f" [the converged study's value, {_apart(scale * value, bounds, fmt)}, lies outside this interval]"
    said: dict[str, str] = {}  # one answer per question, put in the abstract's order below
    world = found.get("personal_signal")
    if world is not None:
        n = world["numbers"]
        digits = percent_digits(n["personal_share_low"], n["personal_share_high"])
        said["world"] = (f"In the planted world of this run, {100 * n['personal_share']:{digits}} % "
                       f"({_ci(100 * n['personal_share_low'], 100 * n['personal_share_high'], digits)}"
                       f"{mark('personal_signal', 'personal_share', 100, digits)}) of what ranking a "
                       f"top {n['k']} is worth needs knowing the user: the rest a ranking by each tweet's average "
                       f"engagement (the popularity oracle) already gets{_page_wide(world)}.")
    reg = found.get("model_vs_oracle_regret")
    if reg is not None:
        n = reg["numbers"]
        share_digits = percent_digits(n["gain_share_low"], n["gain_share_high"])
        sentence = (f"Ranked by its scores with the `{n['weights']}` weights, the Heavy Ranker's feed carries a regret of "
                    f"{n['regret']:.3g} per request against the oracle ({_ci(n['regret_low'], n['regret_high'], '.3g')}"
                    + (f"; the oracle's top {params.get('top_k', 10)} carries {n['oracle_utility']:.3g}"
                       if _is_number(n.get("oracle_utility")) else "") + "), "
                    f"{100 * n['gain_share']:{share_digits}} % "
                    f"({_ci(100 * n['gain_share_low'], 100 * n['gain_share_high'], share_digits)}"
                    f"{mark('model_vs_oracle_regret', 'gain_share', 100, share_digits)}) "
                    f"of what the oracle gains over a random order")
        if _is_number(n.get("seed_user_model_minus_popularity")):  # the primary number: over training seeds
            sentence += (f"; its top {params.get('top_k', 10)} differs from the popularity oracle's by "
                         f"{n['seed_user_model_minus_popularity']:+.3g} per request on average over its {n['seeds']} training seeds (95 % interval over seeds and users "
                         f"{n['seed_user_model_minus_popularity_low']:+.3g} to {n['seed_user_model_minus_popularity_high']:+.3g}"
                         + ("; indicative with so few seeds" if n.get("seed_user_indicative") else "")
                         + f"{mark('model_vs_oracle_regret', 'seed_user_model_minus_popularity', 1, '+.3g')})")
        elif _is_number(n.get("model_minus_popularity")):
            sentence += (f"; its top {params.get('top_k', 10)} differs from the popularity oracle's by "
                         f"{n['model_minus_popularity']:+.3g} per request ({_ci(n['model_minus_popularity_low'], n['model_minus_popularity_high'], '+.3g')}, paired), "
                         f"{100 * n['popularity_gain_share']:.0f} % of the oracle's gain over popularity")
        said["ranker"] = (sentence + f"{_page_wide(reg)}.")
    pos = found.get("positional_feed")
    if pos is not None and _is_number(pos["numbers"].get("positional_minus_by_name_utility")):
        n = pos["numbers"]
        said["positional"] = (f"Paired with its labels by position, as the published configuration does, the ranker's top of the "
                       f"feed changes in true value by {n['positional_minus_by_name_utility']:+.3g} per request against "
                       f"pairing them by name ({_ci(n['positional_minus_by_name_low'], n['positional_minus_by_name_high'], '+.3g')}"
                       f"{mark('positional_feed', 'positional_minus_by_name_utility', 1, '+.3g')})"
                       f"{_page_wide(pos)}.")
    rel = found.get("twhin_link_prediction")
    if rel is not None:
        n = rel["numbers"]
        if "trained_above_popularity" in n:  # the finding's own pair-by-pair comparison, as the page adjusts it
            above = [r for r in listed(n, "trained_above_popularity") if _survives(rel, f"{r}_trained_minus_popularity")]
            below = [r for r in listed(n, "trained_below_popularity") if _survives(rel, f"{r}_trained_minus_popularity")]
            said["twhin"] = (f"TwHIN's trained embeddings rank held-out engagements they have not seen in training better "
                           f"than popularity on {_named(above)} "
                           f"and worse on {_named(below)} of {n['relations']}, by the paired 95 % intervals of the MRR "
                           f"difference over users, after the page's {SECONDARY_ADJUSTMENT} adjustment.")
        if "node_bias_behind_popularity" in n:  # the variant that can carry each relation's own popularity
            ahead = [r for r in listed(n, "node_bias_ahead_of_popularity") if _survives(rel, f"{r}_node_bias_over_popularity")]
            behind = [r for r in listed(n, "node_bias_behind_popularity") if _survives(rel, f"{r}_node_bias_over_popularity")]
            said["twhin_bias"] = (f"With a learned bias per entity and relation, started at popularity, they are better on "
                           f"{_named(ahead)} and worse on {_named(behind)}{_page_wide(rel)}.")
    shift = found.get("regret_decomposition")
    if shift is not None and _is_number(shift["numbers"].get("shift_share")):
        n = shift["numbers"]
        said["shift"] = (f"Of the feed's regret on a set drawn unlike the training data, the shift itself accounts for "
                       f"{round(100 * n['shift_share']) or 0:.0f} % ({_ci(100 * n['shift_share_low'], 100 * n['shift_share_high'], '.0f')}"
                       f"{mark('regret_decomposition', 'shift_share', 100, '.0f')}), "
                       f"the model's errors for the rest{_page_wide(shift)}.")
    best = found.get("optimal_weights_gain")
    if best is not None and _is_number(best["numbers"].get("model_gain")):
        n = best["numbers"]
        said["weights"] = (f"Weights searched for this model on half of the users change the true value of the top "
                       f"{n['k']} on the other half by {n['model_gain']:+.3g} per request "
                       f"({_ci(n['model_gain_low'], n['model_gain_high'], '+.3g')}"
                       f"{mark('optimal_weights_gain', 'model_gain', 1, '+.3g')}) against the `{n['base']}` "
                       f"weights{_page_wide(best)}.")
    ablation = found.get("embedding_ablation")
    if ablation is not None and _is_number(ablation["numbers"].get("trained_gain")):
        n = ablation["numbers"]
        said["ablation"] = (f"Fed to the ranker instead of random vectors, TwHIN's trained embeddings change its median "
                       f"AUROC by {n['trained_gain']:+.3f} ({n['seeds']} seed{'s' if n['seeds'] != 1 else ''} of "
                       f"{int(n['steps']):,} steps){_page_wide(ablation)}.")
    told = {"personal_signal", "model_vs_oracle_regret", "positional_feed", "twhin_link_prediction",
            "regret_decomposition", "optimal_weights_gain", "embedding_ablation"}
    # What the Heavy Ranker learns and what the weights do first; the world they hold in, then the rest:
    # one bullet per question, led by its subject in bold, so the page can be scanned.
    subjects = (("ranker", "The Heavy Ranker"), ("weights", "Its weights"), ("world", "The world"),
                ("positional", "Labels paired by position"), ("shift", "Data shift"), ("twhin", "TwHIN"),
                ("ablation", "TwHIN in the ranker"))
    said["twhin"] = " ".join(said.pop(k) for k in ("twhin", "twhin_bias") if k in said) or None
    answers = [f"- **{subject}.** {said[k]}" for k, subject in subjects if said.get(k)]
    answers += [f"- {_endpoint_sentence(found[i])}" for i in PRIMARY_ENDPOINTS if i in found and i not in told]
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
    tested = [h for f in found.values() for h in f.get("hypotheses", []) if h["p"] is not None]
    lapsed = [i for i in found if "lapse" in (found[i].get("adjusted_verdict") or "")]
    plan = (f"Of the {len(tested)} primary hypotheses, declared before the converged study was run, "
            f"{sum(h['rejected'] for h in tested)} are shown under {PAGE_ADJUSTMENT} within their family; "
            f"every other decision on the Findings page is read under {SECONDARY_ADJUSTMENT}, under which "
            f"{len(lapsed)} finding{'s' if len(lapsed) != 1 else ''} lose{'s' if len(lapsed) == 1 else ''} a declared difference. "
            "The words with a fixed meaning (oracle, popularity oracle, regret, TOST, …) are in the [Glossary](glossary.md); "
            "the page [Try the weights](weights.md) re-ranks this run's held-out requests with weights of your choice.")
    if converged is not None:
        name, other = converged
        compared = [k for k in HEADLINE_NUMBERS if _is_number(found.get(k[0], {}).get("numbers", {}).get(k[1]))]
        plan += (f" The converged study ({name}) was made in another planted world, so these intervals are not "
                 "compared with it." if other is None else
                 f" Each interval above was compared with the converged study's value ({name}): "
                 f"{len(outside)} of {len(compared)} lie outside it, each marked where it stands.")
    return ("## Abstract\n\n" + "\n".join(answers) + ("\n\n" if answers else "") + plan
            + "\n\n**Limits.** " + "; ".join(limits) + ".\n\n")

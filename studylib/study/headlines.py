"""The README's headline results, written from a committed findings file so they cannot go stale.

The README holds a block between two markers that names its source; `python -m studylib.study.headlines`
rewrites the block from that file, and a test fails when the README's block differs from what this
module writes. Each sentence reads its direction from the finding's numbers, never from fixed prose.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from studylib.analysis.findings.core import _ci, by_id, excludes_zero, percent_digits
from studylib.errors import StudyError

BEGIN = "<!-- headlines from {source}: `python -m studylib.study.headlines` writes this block -->"
END = "<!-- end of headlines -->"
BLOCK = re.compile(r"<!-- headlines from (?P<source>\S+): .*?-->\n(?P<body>.*?)<!-- end of headlines -->", re.S)
NEEDED = ("personal_signal", "model_vs_oracle_regret", "optimal_weights_gain", "twhin_link_prediction")


def _share(x: float, low: float, high: float) -> str:
    """A share as "92 % (95 % CI 91 to 93 %)", with one decimal where whole percents would hide the interval."""
    digits = percent_digits(low, high)
    return f"{100 * x:{digits}} % ({_ci(100 * low, 100 * high, digits)} %)"


def _relations(names: str) -> list[str]:
    return [r for r in names.split(", ") if r]


def headlines(found: dict[str, dict]) -> list[str]:
    """Three results and the world they hold in, one markdown bullet each, from a findings file's contents."""
    missing = [i for i in NEEDED if i not in found]
    if missing:
        raise StudyError(f"findings: no finding {missing[0]!r}; the headlines need {', '.join(NEEDED)}")
    world = found["personal_signal"]["numbers"]
    reg = found["model_vs_oracle_regret"]["numbers"]
    best = found["optimal_weights_gain"]["numbers"]
    twhin = found["twhin_link_prediction"]["numbers"]
    k = world["k"]
    lines = [
        f"- **The world.** {_share(world['personal_share'], world['personal_share_low'], world['personal_share_high'])} of what "
        f"ranking a top {k} is worth needs knowing the user; the rest a ranking by each tweet's average engagement "
        f"(the *popularity oracle*) already gets ({world['requests']:,} held-out requests, `{world['weights']}` weights).",
    ]
    # the primary number: over training seeds (seed x user interval) where the study has several seeds
    stem = "seed_user_model_minus_popularity" if "seed_user_model_minus_popularity" in reg else "model_minus_popularity"
    above = reg[stem] > 0
    clear = excludes_zero(reg[f"{stem}_low"], reg[f"{stem}_high"])
    relation = ("above" if above else "below") if clear else "not distinguishable from"
    how = (f"mean over {reg['seeds']} training seeds, interval over seeds and users"
           + ("; indicative with so few seeds" if reg.get("seed_user_indicative") else "")
           if stem.startswith("seed_user") else "paired by request")
    lines.append(
        f"- **The Heavy Ranker** captures {_share(reg['gain_share'], reg['gain_share_low'], reg['gain_share_high'])} "
        f"of what the oracle gains "
        f"over a random order, and its top {k} is {relation} the popularity oracle's: "
        f"{reg[stem]:+.3g} in the top {k}'s true weighted value per request "
        f"({_ci(reg[f'{stem}_low'], reg[f'{stem}_high'], '+.3g')}; {how}), "
        f"{_share(reg['popularity_gain_share'], reg['popularity_gain_share_low'], reg['popularity_gain_share_high'])} "
        f"of the oracle's gain over popularity (the first seed's model).")
    gain_clear = excludes_zero(best["model_gain_low"], best["model_gain_high"])
    if gain_clear and best["model_gain"] > 0:
        verdict = f"weights that beat the `{best['base']}` ones exist for this model"
    elif gain_clear:
        verdict = f"the fitted weights do worse than the `{best['base']}` ones"
    else:
        verdict = f"no weights measurably better than the `{best['base']}` ones were found for this model"
    lines.append(
        f"- **The weights.** Searched on {best['fit_users']} users and judged on {best['report_users']} others, "
        f"the ten weights change the true value of the top {best['k']} by {best['model_gain']:+.3g} per request "
        f"({_ci(best['model_gain_low'], best['model_gain_high'], '+.3g')}; "
        f"{best['fit_gain']:+.3g} on the users they were fitted on): {verdict}.")
    ahead, behind = _relations(twhin["trained_above_popularity"]), _relations(twhin["trained_below_popularity"])
    kept = (f"at the step held-out early stopping kept ({twhin['trained_best_step']:,} of at most {twhin['steps']:,})"
            if "trained_best_step" in twhin else f"after {twhin['steps']:,} steps")
    line = (f"- **TwHIN**, judged on held-out pairs it has not seen in training, ranks better than popularity on "
            f"{len(ahead)} and worse on {len(behind)} of {twhin['relations']} relations"
            + (f" ({', '.join(behind)} worse)" if behind else "") + f" {kept}; paired 95 % intervals over users")
    if "node_bias_behind_popularity" in twhin:
        bias_ahead = _relations(twhin["node_bias_ahead_of_popularity"])
        bias_behind = _relations(twhin["node_bias_behind_popularity"])
        start = ("its start (step 0: nothing it learned beat counting on unseen pairs)"
                 if twhin.get("trained_node_bias_best_step") == 0 else
                 f"step {twhin['trained_node_bias_best_step']:,}" if "trained_node_bias_best_step" in twhin else "its last step")
        where = ("not distinguishable from popularity on any relation" if not (bias_ahead or bias_behind) else
                 f"better than popularity on {len(bias_ahead)} and worse on {len(bias_behind)}")
        line += f". Started at each relation's popularity, the run with relation biases kept {start} and is {where}"
    lines.append(line + ".")
    return lines


def block(source: str, found: dict[str, dict]) -> str:
    return BEGIN.format(source=source) + "\n" + "\n".join(headlines(found)) + "\n" + END


def read_findings(path: Path) -> dict[str, dict]:
    try:
        return by_id(json.loads(path.read_text()))
    except FileNotFoundError:
        raise StudyError(f"{path}: no such findings file") from None
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise StudyError(f"{path}: not a findings file ({exc})") from None


def rewrite(readme: Path, repo: Path) -> tuple[str, str]:
    """The README's text and the same text with its headline block written from the file it names."""
    text = readme.read_text()
    match = BLOCK.search(text)
    if match is None:
        raise StudyError(f"{readme}: no headline block (a line {BEGIN.format(source='FILE')!r})")
    source = match["source"]
    new = text[:match.start()] + block(source, read_findings(repo / source)) + text[match.end():]
    return text, new


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parents[2]
    readme = Path(argv[0]) if argv else repo / "README.md"
    try:
        old, new = rewrite(readme, repo)
    except StudyError as exc:
        print(f"headlines: error: {exc}", file=sys.stderr)
        return 2
    if new != old:
        readme.write_text(new)
    print(f"{readme}: headlines {'rewritten' if new != old else 'already current'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

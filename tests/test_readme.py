"""The README is the front door: short, every page it points to exists, and every result in it is
written from a committed findings file by a tested function, so it cannot go stale."""

from __future__ import annotations

import copy
import re

import pytest

from studylib.errors import StudyError
from studylib.ranker.weights import load_weights
from studylib.schema import WEIGHT_SUFFIX
from studylib.study import headlines
from studylib.study.pipeline import REPO

README = REPO / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_readme_is_short_and_reaches_every_docs_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    linked = {m for m in LINK.findall(text)}
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{page.name}" in linked, f"docs/{page.name} is not linked from the README"


@pytest.mark.parametrize("doc", ["README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))])
def test_every_relative_link_in_the_documents_reaches_a_file(doc):
    path = REPO / doc
    for target in LINK.findall(path.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (path.parent / target).exists(), f"{doc}: link to {target}, which does not exist"


def test_readme_headlines_are_written_from_the_committed_findings():
    text, rewritten = headlines.rewrite(README, REPO)
    assert text == rewritten, "README headlines are stale: run `python -m studylib.study.headlines`"
    block = headlines.BLOCK.search(text)
    assert (REPO / block["source"]).exists()
    assert block["body"].count("\n- ") + block["body"].startswith("- ") == 4


def test_readme_heads_table_holds_both_published_weight_versions():
    march, april = load_weights("march_2023").weights, load_weights("april_2023").weights
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| (−?[\d.]+) \| (−?[\d.]+) \|$", README.read_text(), re.M)
    by_short = {WEIGHT_SUFFIX[h]: h for h in april}
    assert {name for name, _, _ in rows} == set(by_short)
    for name, m, a in rows:
        assert float(m.replace("−", "-")) == march[by_short[name]], name
        assert float(a.replace("−", "-")) == april[by_short[name]], name


def _reference() -> dict[str, dict]:
    block = headlines.BLOCK.search(README.read_text())
    return headlines.read_findings(REPO / block["source"])


def test_headlines_read_their_direction_from_the_numbers():
    found = copy.deepcopy(_reference())
    reg = found["model_vs_oracle_regret"]["numbers"]
    for key in [k for k in reg if k.startswith("seed_user_")]:  # the single model's numbers decide without seeds
        del reg[key]
    reg.update(model_minus_popularity=-4.0, model_minus_popularity_low=-6.0, model_minus_popularity_high=-2.0)
    assert "is below the popularity oracle's" in headlines.headlines(found)[1]
    reg.update(model_minus_popularity=1.0, model_minus_popularity_low=-1.0, model_minus_popularity_high=3.0)
    assert "is not distinguishable from the popularity oracle's" in headlines.headlines(found)[1]
    reg.update(model_minus_popularity=5.0, model_minus_popularity_low=2.0, model_minus_popularity_high=8.0)
    assert "is above the popularity oracle's" in headlines.headlines(found)[1]
    best = found["optimal_weights_gain"]["numbers"]
    best.update(model_gain=0.6, model_gain_low=0.2, model_gain_high=1.0)
    assert "better than" not in headlines.headlines(found)[2] and "exist for this model" in headlines.headlines(found)[2]
    best.update(model_gain=0.1, model_gain_low=-0.3, model_gain_high=0.5)
    assert "no weights measurably better" in headlines.headlines(found)[2]
    twhin = found["twhin_link_prediction"]["numbers"]
    twhin.update(trained_above_popularity="fav, follow", trained_below_popularity="")
    assert "better than popularity on 2 and worse on 0 of 5 relations at the step held-out early stopping kept" \
        in headlines.headlines(found)[3]
    twhin.update(trained_node_bias_best_step=0)
    assert "kept its start (step 0: nothing it learned beat counting on unseen pairs)" in headlines.headlines(found)[3]


def test_headline_shares_show_their_interval():
    """A share whose interval rounds to one whole percent gets a decimal, so "92 % (92 to 92 %)" never appears."""
    assert headlines._share(0.47, 0.46, 0.49) == "47 % (95 % CI 46 to 49 %)"
    assert headlines._share(0.9198, 0.9152, 0.9234) == "92.0 % (95 % CI 91.5 to 92.3 %)"


def test_headlines_refuse_findings_without_what_they_state(tmp_path):
    found = _reference()
    del found["optimal_weights_gain"]
    with pytest.raises(StudyError, match="no finding 'optimal_weights_gain'"):
        headlines.headlines(found)
    broken = tmp_path / "findings.json"
    broken.write_text("{not json")
    with pytest.raises(StudyError, match=r"findings\.json: not a findings file"):
        headlines.read_findings(broken)


def test_headlines_state_the_model_over_training_seeds_where_the_findings_have_them():
    found = copy.deepcopy(_reference())
    reg = found["model_vs_oracle_regret"]["numbers"]
    reg.update(seeds=3, seed_user_model_minus_popularity=2.0, seed_user_model_minus_popularity_low=-1.0,
               seed_user_model_minus_popularity_high=5.0, seed_user_indicative=True)
    line = headlines.headlines(found)[1]
    assert "is not distinguishable from the popularity oracle's: +2 in" in line
    assert "mean over 3 training seeds, interval over seeds and users; indicative with so few seeds" in line


def test_where_to_change_names_files_that_exist_and_symbols_defined_in_them():
    """docs/architecture.md's "where to change" table: each row's files exist (paths under studylib/
    unless they start at the repository), and each name in code font is defined in one of them."""
    text = (REPO / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| (?!to change|---)(.+?) \| (.+) \|$", text.split("Where to change one behaviour")[1],
                      re.MULTILINE)
    assert len(rows) >= 15
    for what, edit in rows:
        names = re.findall(r"`([^`]+)`", edit)
        paths = [n for n in names if "/" in n or n.endswith(".py")]
        files = [f for p in paths for f in sorted((REPO if p.split("/")[0] in ("studylib", "notebooks") else
                                                   REPO / "studylib").glob(p.replace("<profile>", "*")))]
        assert files and len(files) >= len(paths), (what, paths)
        for name in names:
            if name in paths or " " in name or name.startswith("@"):
                continue  # a command or the decorator's name, not a symbol
            symbol = name.removesuffix("*")
            assert any(re.search(rf"\b{re.escape(symbol)}", f.read_text()) for f in files if f.is_file()), (what, name)


def test_full_profile_trains_the_ablation_seeds_the_converged_study_asks_for():
    """Chapter 2b of the converged study computes how many seeds its decisive contrast (trained embeddings
    against none) needs for power at the stated margin; the `full` profile must carry at least that many,
    so the profile meant to answer it does (issue 38)."""
    import json

    from studylib.study.pipeline import load_profile

    ablation = {f["id"]: f for f in json.loads((REPO / "benchmarks/reference/paper_findings.json").read_text())}[
        "embedding_ablation"]["numbers"]
    needed = ablation.get("trained_over_none_seeds_needed")
    assert needed is not None, "the converged reference predates chapter 2b's no-embedding arm: re-make it"
    _, full = load_profile(REPO / "notebooks" / "profiles", "full")
    assert full.get("ablation_seeds", 0) >= max(needed, ablation["seeds"])


def test_budget_table_and_the_readme_count_are_the_scripts_output_on_the_committed_references():
    """docs/budget.md's table is `benchmarks/budget_effect.py` on the two committed findings files, and the
    README's "reaches the converged verdict on N of M findings" is its count: neither is typed by hand."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "budget_effect.py"),
                          str(REPO / "benchmarks/reference/quick_findings.json"),
                          str(REPO / "benchmarks/reference/paper_findings.json")],
                         capture_output=True, text=True, check=True).stdout
    table, summary = out.strip().rsplit("\n\n", 1)
    assert table in (REPO / "docs" / "budget.md").read_text(), "docs/budget.md: re-paste the budget table"
    changed, total = map(int, re.match(r"(\d+) of (\d+) findings change", summary).groups())
    assert f"reaches the converged verdict on {total - changed} of {total} findings" in " ".join(README.read_text().split())


def test_readme_times_agree_with_the_plan_calibrated_on_measured_chapters():
    """The README's study times (fresh-clone quick, converged paper) and the plan `make study` prints are
    one story: the plan's estimate is calibrated on measured chapters (tests/test_estimate.py), and the
    README's measured times must lie within a fifth of it (the paper's below its "at most")."""
    from studylib.study import estimate, parameters
    from studylib.study.pipeline import load_profile

    text = " ".join(README.read_text().split())

    def planned(profile: str) -> float:
        p = {**parameters.DEFAULTS, **load_profile(REPO / "notebooks" / "profiles", profile)[1]}
        return sum(estimate.fresh_seconds(c, p, 1.0) for c in estimate.FIXED_SECONDS) + estimate.REPORT_SECONDS

    quick = re.search(r"`make study` from a fresh clone, set-up included \([^)]*\) \| (\d+) min (\d+) s", text)
    assert quick, "README: the fresh-clone `make study` time is missing"
    quick_seconds = 60 * int(quick[1]) + int(quick[2])
    assert 0.8 * planned("quick") <= quick_seconds <= 1.2 * planned("quick")
    paper = re.search(r"`make study PROFILE=paper` is the converged study \(about ([\d.]+) h", text)
    assert paper, "README: the paper study's time is missing"
    assert 0.8 * planned("paper") <= float(paper[1]) * 3600 <= planned("paper")

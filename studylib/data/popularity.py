"""Rankings that ignore who asks: the popularity oracle and a learned popularity model.

A feed ranks one user's candidates. A score that is the same for every user (a tweet's average
engagement) already orders them by how engaging each tweet is; what it cannot know is how much
*this* user likes *this* tweet. Two such scores stand beside the model and the oracle wherever a
ranking is judged:
- the popularity oracle: each tweet's true probabilities averaged exactly over the users who make
  requests (`World.popularity_probabilities`), the best any non-personal ranking can do;
- learned popularity: each tweet's engagement rate per label in the training examples, shrunk to
  its author's rate and that to the label's overall rate (empirical-Bayes smoothing), the simplest
  model of the same examples the ranker learns from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studylib.data.layout import MANIFEST, stored_names
from studylib.data.reader import load_table
from studylib.data.world import World, WorldParams
from studylib.errors import StudyError
from studylib.io import read_json
from studylib.schema import LABELS

PRIOR_IMPRESSIONS = 50.0  # weight of the author's (and the overall) rate, in impressions, when shrinking
TWEET, AUTHOR = "meta__tweet_id", "meta__author_id"


def _world_of(data_dir: str | Path) -> tuple[World, str]:
    path = Path(data_dir) / MANIFEST
    if not path.exists():
        raise StudyError(f"{path}: missing; the popularity oracle needs the data set's world")
    manifest = read_json(path)
    return World(WorldParams.from_record(manifest["params"]["world"], str(path))), manifest["scenario"]


def oracle_probabilities(data_dir: str | Path, tweets: np.ndarray) -> dict[str, np.ndarray]:
    """label -> [len(tweets)]: the popularity oracle of a data set's candidates (its world and
    scenario from its manifest). A `random` scenario's truth is every label's mean rate, the same
    for all users, so its popularity oracle is that truth itself."""
    world, scenario = _world_of(data_dir)
    tweets = np.asarray(tweets, dtype=np.int64)
    if scenario == "random":
        return {label: np.full(tweets.size, rate) for label, rate in world.mean_rates().items()}
    unique, inverse = np.unique(tweets, return_inverse=True)
    probs = world.popularity_probabilities(unique, cohorts=scenario == "cohorts")
    return {label: values[inverse] for label, values in probs.items()}


def learned_rates(train_dir: str | Path, tweets: np.ndarray, authors: np.ndarray,
                  prior: float = PRIOR_IMPRESSIONS) -> dict[str, np.ndarray]:
    """label -> [len(tweets)]: each (tweet, author)'s smoothed engagement rate in the training set.

    rate(author) = (positives + prior · overall rate) / (impressions + prior), and a tweet's rate
    shrinks to its author's the same way, so a tweet never seen in training gets its author's rate
    and an unseen author the overall rate."""
    if not prior > 0:
        raise StudyError(f"learned popularity: prior must be > 0, got {prior}")
    stored = stored_names()
    table = load_table(train_dir, columns=[stored[TWEET], stored[AUTHOR], *LABELS])
    seen_tweet = table.column(stored[TWEET]).to_numpy()
    seen_author = table.column(stored[AUTHOR]).to_numpy()
    tweets, authors = np.asarray(tweets, dtype=np.int64), np.asarray(authors, dtype=np.int64)
    n_t = int(max(seen_tweet.max(initial=0), tweets.max(initial=0))) + 1
    n_a = int(max(seen_author.max(initial=0), authors.max(initial=0))) + 1
    shown_t = np.bincount(seen_tweet, minlength=n_t)
    shown_a = np.bincount(seen_author, minlength=n_a)
    out = {}
    for label in LABELS:
        y = table.column(label).to_numpy().astype(np.float64)
        overall = y.mean()
        author_rate = (np.bincount(seen_author, y, n_a) + prior * overall) / (shown_a + prior)
        tweet_pos = np.bincount(seen_tweet, y, n_t)[tweets]
        out[label] = (tweet_pos + prior * author_rate[authors]) / (shown_t[tweets] + prior)
    return out


__all__ = ["PRIOR_IMPRESSIONS", "learned_rates", "oracle_probabilities"]

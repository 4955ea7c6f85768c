"""A small planted world of users, authors and tweets with known latent vectors.

Every label's true probability is a known function of the latents, so every later step
(training, scoring, ranking) can be checked against the truth. The world is a pure
function of its parameters and seed: the ranker data and (later) the TwHIN graph drawn
from the same parameters see the same users, authors and tweets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.optimize import brentq

from studylib.errors import StudyError
from studylib.schema import BASE_RATES, LABEL_PREFIX, LABELS

P = LABEL_PREFIX
POSITIVE = tuple(P + n for n in (
    "is_favorited", "is_replied", "is_retweeted", "is_bookmarked", "is_shared", "is_video_playback_50",
    "is_profile_clicked_and_profile_engaged", "is_tweet_detail_dwelled_15_sec",
))
NEGATIVE = (P + "is_negative_feedback_v2", P + "is_report_tweet_clicked")
# Nested labels: child -> parents. The child can only happen when one of its parents did:
# P(child) = P(any parent) · q(child | parent), with q a function of the latents.
NESTED = {
    P + "is_replied_reply_engaged_by_author": (P + "is_replied",),
    P + "is_good_clicked_convo_desc_favorited_or_replied": (P + "is_favorited", P + "is_replied"),
    P + "is_good_clicked_convo_desc_v2": (P + "is_tweet_detail_dwelled_15_sec",),
}
ROOTS = POSITIVE + NEGATIVE
assert set(ROOTS) | set(NESTED) == set(LABELS)

COHORTS = ("baseline", "negatives_suppressed", "positives_suppressed")
# Cohort suppression factors on root labels' probabilities (nested labels follow their parents).
SUPPRESSION = {"negatives_suppressed": (NEGATIVE, 0.1), "positives_suppressed": (POSITIVE, 0.25)}


def cohort_scale(cohort: np.ndarray) -> np.ndarray:
    """[n, labels] float32: each row's suppression factor per label (1 for the baseline cohort)."""
    scale = np.ones((cohort.size, len(LABELS)), dtype=np.float32)
    for name, (labels, factor) in SUPPRESSION.items():
        rows = cohort == COHORTS.index(name)
        for label in labels:
            scale[rows, LABELS.index(label)] = factor
    return scale


@dataclass(frozen=True)
class WorldParams:
    n_users: int = 2000
    n_authors: int = 400
    n_tweets: int = 20000
    latent_dim: int = 16
    signal: float = 1.5  # std of the latent part of each label's logit
    # Share of that latent part's variance carried by the user×tweet affinity (u⊙t): the part of a
    # label that depends on who the user is *for this tweet*. Within a request the user's own and
    # the tweet's own terms rank candidates the same way for every user, so this sets how much a
    # feed can gain by knowing the user (chapter 1 measures the resulting share of the top-k value).
    pair_variance: float = 0.6
    rate_scale: float = 1.0  # multiplies every base rate (CPU-sized data needs more positives)
    seed: int = 0

    @classmethod
    def from_record(cls, record, where: str) -> "WorldParams":
        """The world a manifest recorded (`params.world`), checked as read: known keys only, whole
        numbers for the sizes and seed, finite numbers for the rest; one line naming `where` else."""
        if not isinstance(record, dict):
            raise StudyError(f"{where}: params.world must be a mapping, got {type(record).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(record) - set(known), key=str)
        if unknown:
            raise StudyError(f"{where}: params.world has an unknown key {str(unknown[0])[:40]!r} "
                             f"(known: {', '.join(known)})")
        for name, value in record.items():
            whole = known[name].type == "int"
            ok = isinstance(value, int) if whole else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok:
                raise StudyError(f"{where}: params.world.{name} must be {'an integer' if whole else 'a number'}, "
                                 f"got {type(value).__name__}")
        world = cls(**record)
        try:
            world.validate()
        except StudyError as exc:
            raise StudyError(f"{where}: {exc}") from None
        return world

    def validate(self) -> None:
        for name in ("n_users", "n_authors", "n_tweets", "latent_dim"):
            if getattr(self, name) < 1:
                raise StudyError(f"world parameter {name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.rate_scale <= 100:
            raise StudyError(f"world parameter rate_scale must be in (0, 100], got {self.rate_scale}")
        if not 0 <= self.pair_variance <= 1:  # also NaN
            raise StudyError(f"world parameter pair_variance must be in [0, 1], got {self.pair_variance}")
        if not 0 <= self.signal <= MAX_SIGNAL:  # also NaN; beyond it no intercept reaches the base rates
            raise StudyError(f"world parameter signal must be in [0, {MAX_SIGNAL:g}], got {self.signal}")
        if self.latent_dim > MAX_LATENT_DIM:
            raise StudyError(f"world parameter latent_dim must be <= {MAX_LATENT_DIM}, got {self.latent_dim}")
        entities = self.n_users + self.n_authors + self.n_tweets
        if entities * self.latent_dim > MAX_LATENT_VALUES:
            raise StudyError(f"world parameters: {entities:,} entities x latent_dim {self.latent_dim} latent values "
                             f"exceed {MAX_LATENT_VALUES:,} (about {MAX_LATENT_VALUES * 8 / 2**30:.0f} GiB)")


RATE_CAP = 0.5  # no label is planted above this rate, whatever rate_scale asks
MAX_SIGNAL = 10.0  # std of a logit's latent part; far beyond the study's 1.5 and what the rates' solve can place
MAX_LATENT_DIM = 1024
MAX_LATENT_VALUES = 200_000_000  # all entities' latent vectors together (float64: 1.5 GiB)


def target_rates(rate_scale: float) -> dict[str, float]:
    """Published base rate × rate_scale, capped at RATE_CAP (e.g. dwell: 0.03 × 20 = 0.6 -> 0.5)."""
    return {label: min(RATE_CAP, BASE_RATES[label] * rate_scale) for label in LABELS}


class World:
    """Latent vectors of every entity and the label model; pure function of `WorldParams`."""

    def __init__(self, params: WorldParams):
        params.validate()
        self.params = params
        k = params.latent_dim
        rng = np.random.default_rng([params.seed, 0xC0FFEE])
        self.user_latent = rng.standard_normal((params.n_users, k)).astype(np.float32)
        self.author_latent = rng.standard_normal((params.n_authors, k)).astype(np.float32)
        # Heavy tails: a few authors write most tweets, a few users make most requests,
        # a few tweets are candidates most often.
        self.author_of_tweet = _zipf_choice(rng, params.n_authors, params.n_tweets, exponent=1.1)
        own = rng.standard_normal((params.n_tweets, k)).astype(np.float32)
        self.tweet_latent = (0.6 * self.author_latent[self.author_of_tweet] + 0.8 * own).astype(np.float32)
        self.user_activity = _normalized(rng.lognormal(0.0, 1.0, params.n_users))
        self.tweet_popularity = _normalized(rng.lognormal(0.0, 1.2, params.n_tweets))
        self.cohort_of_user = rng.integers(0, len(COHORTS), params.n_users).astype(np.int8)
        # Label model: one weight vector per label over interaction features (see `_interactions`).
        # Positive labels share an "interest" direction; negative ones lean against it.
        width = 4 * k
        interest = rng.standard_normal(width)
        self.label_weights = {}
        for label in LABELS:
            own_w = rng.standard_normal(width)
            if label in NEGATIVE:
                w = -0.6 * interest + 0.8 * own_w
            else:
                w = 0.7 * interest + 0.7 * own_w
            self.label_weights[label] = _split_variance(w, k, params.pair_variance)
        self.label_bias = self._fit_biases(rng)

    # -- the label model -------------------------------------------------------------------

    def _interactions(self, user: np.ndarray, tweet: np.ndarray) -> np.ndarray:
        """[n, 4k]: the tweet's, user's and author's latents and the user⊙tweet affinity
        (how engaging a tweet is, how active a user is, and how much this user likes this tweet;
        the label weights set each part's share, `WorldParams.pair_variance`)."""
        u, t = self.user_latent[user], self.tweet_latent[tweet]
        a = self.author_latent[self.author_of_tweet[tweet]]
        return np.concatenate([t, u, a, u * t], axis=1)

    def _scores(self, inter: np.ndarray) -> np.ndarray:
        """[n, labels]: the latent part of every label's logit (std ≈ signal)."""
        weights = np.stack([self.label_weights[label] for label in LABELS], axis=1)
        return (inter @ weights) * np.float32(self.params.signal)

    def true_probabilities(self, user: np.ndarray, tweet: np.ndarray, cohort_scale: np.ndarray | None = None,
                           bias: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        """Marginal probability of every label for each (user, tweet) pair.

        cohort_scale: optional [n, labels] factors applied to the root labels' probabilities
        (a cohort that suppresses some engagements); nested labels inherit the suppression
        through their parents, so the stored truth stays exact.
        """
        bias = self.label_bias if bias is None else bias
        scores = self._scores(self._interactions(user, tweet))
        col = {label: i for i, label in enumerate(LABELS)}
        probs = {}
        for label in ROOTS:
            p = _sigmoid(scores[:, col[label]] + bias[label])
            if cohort_scale is not None:
                p = p * cohort_scale[:, col[label]]
            probs[label] = p.astype(np.float32)
        for label, parents in NESTED.items():
            parent = 1.0 - np.prod([1.0 - probs[q] for q in parents], axis=0)
            probs[label] = (parent * _sigmoid(scores[:, col[label]] + bias[label])).astype(np.float32)
        return probs

    def root_probability_grid(self, label: str, user: np.ndarray, tweet: np.ndarray) -> np.ndarray:
        """[len(user), len(tweet)] float32: `true_probabilities(...)[label]` of every user with every
        tweet, for a root label (its probability needs no parents)."""
        if label not in ROOTS:
            raise StudyError(f"root_probability_grid: {label} is not a root label (it has parent labels)")
        return _sigmoid(self._logit_grid(label, user, tweet) + self.label_bias[label]).astype(np.float32)

    def _logit_grid(self, label: str, user: np.ndarray, tweet: np.ndarray) -> np.ndarray:
        """[len(user), len(tweet)]: the latent part of `label`'s logit for every user with every tweet.

        The logit is linear in the tweet's, user's and author's latents plus one bilinear
        user⊙tweet term, so the grid is two vectors and one matmul instead of a [pairs, 4k]
        interaction row per pair (the same sums, added in another order: equal to float32 rounding)."""
        k = self.params.latent_dim
        w_tweet, w_user, w_author, w_pair = self.label_weights[label].reshape(4, k)
        u, t = self.user_latent[user], self.tweet_latent[tweet]
        tweet_part = t @ w_tweet + self.author_latent[self.author_of_tweet[tweet]] @ w_author
        grid = (u * w_pair) @ t.T
        grid += (u @ w_user)[:, None]
        grid += tweet_part[None, :]
        grid *= np.float32(self.params.signal)
        return grid

    def popularity_probabilities(self, tweet: np.ndarray, cohorts: bool = False,
                                 chunk: int = 512) -> dict[str, np.ndarray]:
        """The popularity oracle: each tweet's true probability of every label averaged over the
        users who make requests (weighted by their activity), exactly, as one matrix per label.

        It is the best ranking that ignores who asks: within a request every candidate is scored
        for the same average user. cohorts=True averages the `cohorts` scenario's truth (each
        user's cohort suppression applied before averaging). With pair_variance 0 it orders every
        request as the oracle does."""
        users = np.arange(self.params.n_users)
        activity = self.user_activity.astype(np.float64)
        scale = cohort_scale(self.cohort_of_user) if cohorts else None
        col = {label: i for i, label in enumerate(LABELS)}
        tweet = np.asarray(tweet)
        out = {label: np.empty(tweet.size, dtype=np.float64) for label in LABELS}
        for start in range(0, tweet.size, chunk):
            part = tweet[start:start + chunk]
            grids = {}
            for label in ROOTS:
                p = _sigmoid(self._logit_grid(label, users, part).astype(np.float64) + self.label_bias[label])
                grids[label] = p if scale is None else p * scale[:, col[label], None]
            for label, parents in NESTED.items():
                parent = 1.0 - np.prod([1.0 - grids[q] for q in parents], axis=0)
                grids[label] = parent * _sigmoid(self._logit_grid(label, users, part).astype(np.float64)
                                                 + self.label_bias[label])
            for label in LABELS:
                out[label][start:start + chunk] = activity @ grids[label]
        return out

    def _fit_biases(self, rng: np.random.Generator) -> dict[str, float]:
        """Pick each label's bias so the mean true probability over candidate pairs hits its target rate."""
        n = 20000
        user = rng.choice(self.params.n_users, n, p=self.user_activity)
        tweet = rng.choice(self.params.n_tweets, n, p=self.tweet_popularity)
        scores = self._scores(self._interactions(user, tweet)).astype(np.float64)
        col = {label: i for i, label in enumerate(LABELS)}
        targets = target_rates(self.params.rate_scale)
        bias, root_probs = {}, {}
        self._targets = {}
        for label in ROOTS:
            bias[label] = _solve_bias(scores[:, col[label]], np.ones(n), targets[label])
            root_probs[label] = _sigmoid(scores[:, col[label]] + bias[label])
            self._targets[label] = (targets[label], "capped" if targets[label] == RATE_CAP else "")
        for label, parents in NESTED.items():
            parent = 1.0 - np.prod([1.0 - root_probs[q] for q in parents], axis=0)
            target = min(targets[label], 0.9 * parent.mean())
            self._targets[label] = (target, "limited by its parent" if target < targets[label] else "")
            bias[label] = _solve_bias(scores[:, col[label]], parent, target)
            root_probs[label] = parent * _sigmoid(scores[:, col[label]] + bias[label])
        self._mean_rates = {label: float(root_probs[label].mean()) for label in LABELS}
        return bias

    def targets(self) -> dict[str, tuple[float, str]]:
        """label -> (the rate the world was fitted to, why it differs from base rate × rate_scale or "")."""
        return dict(self._targets)

    def mean_rates(self) -> dict[str, float]:
        """Mean true probability of each label over candidate pairs (the planted base rates)."""
        return dict(self._mean_rates)

    def describe(self) -> dict:
        return {"params": asdict(self.params), "label_bias": {k: float(v) for k, v in self.label_bias.items()}}


def _split_variance(w: np.ndarray, k: int, pair_variance: float) -> np.ndarray:
    """Scale a label's weights over [t, u, a, u⊙t] so the latent logit has variance 1 (times
    `signal` later) with `pair_variance` of it in the u⊙t block.

    The blocks' variances are exact: every latent coordinate has variance 1, t = 0.6·a + 0.8·own
    gives cov(t, a) = 0.6 per coordinate, and u⊙t (u independent of t) is uncorrelated with the rest."""
    w_t, w_u, w_a, w_p = (w[i * k:(i + 1) * k] for i in range(4))
    entity_var = w_t @ w_t + w_u @ w_u + w_a @ w_a + 2 * 0.6 * (w_t @ w_a)
    entity = np.sqrt((1.0 - pair_variance) / entity_var)
    pair = np.sqrt(pair_variance / (w_p @ w_p))
    return np.concatenate([entity * w[:3 * k], pair * w_p]).astype(np.float32)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _normalized(w: np.ndarray) -> np.ndarray:
    return w / w.sum()


def _zipf_choice(rng: np.random.Generator, n_items: int, n_draws: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n_items + 1) ** exponent
    return rng.permutation(n_items)[rng.choice(n_items, n_draws, p=_normalized(weights))]


def _solve_bias(score: np.ndarray, scale: np.ndarray, target: float) -> float:
    """The b with mean(scale · sigmoid(score + b)) = target (monotone in b; Brent's method)."""
    return float(brentq(lambda b: float((scale * _sigmoid(score + b)).mean()) - target, -40.0, 40.0, xtol=1e-12))

"""Names and published constants of the Heavy Ranker's data (FACTS.md, recap configs).

Everything that pairs a label with a head, a head with a weight, or a column with a
feature group goes through the names defined here, never through positions.
"""

LABEL_PREFIX = "recap.engagement."

# The 13 labels stored with every example, in the stored (alphabetical) order.
LABELS = tuple(
    LABEL_PREFIX + name
    for name in (
        "is_bookmarked",
        "is_favorited",
        "is_good_clicked_convo_desc_favorited_or_replied",
        "is_good_clicked_convo_desc_v2",
        "is_negative_feedback_v2",
        "is_profile_clicked_and_profile_engaged",
        "is_replied",
        "is_replied_reply_engaged_by_author",
        "is_report_tweet_clicked",
        "is_retweeted",
        "is_shared",
        "is_tweet_detail_dwelled_15_sec",
        "is_video_playback_50",
    )
)

# Head name -> suffix of its engagement weight (`scored_tweets_model_weight_<suffix>`).
WEIGHT_SUFFIX = {
    LABEL_PREFIX + "is_favorited": "fav",
    LABEL_PREFIX + "is_retweeted": "retweet",
    LABEL_PREFIX + "is_replied": "reply",
    LABEL_PREFIX + "is_profile_clicked_and_profile_engaged": "good_profile_click",
    LABEL_PREFIX + "is_video_playback_50": "video_playback50",
    LABEL_PREFIX + "is_replied_reply_engaged_by_author": "reply_engaged_by_author",
    LABEL_PREFIX + "is_good_clicked_convo_desc_favorited_or_replied": "good_click",
    LABEL_PREFIX + "is_good_clicked_convo_desc_v2": "good_click_v2",
    LABEL_PREFIX + "is_negative_feedback_v2": "negative_feedback_v2",
    LABEL_PREFIX + "is_report_tweet_clicked": "report",
}
WEIGHT_PREFIX = "scored_tweets_model_weight_"

# Estimated real base rates (FACTS.md: downsampling rates, assuming balanced downsampled
# data). The three labels without a head have no published estimate; the values marked
# "assumed" are this study's choice and are documented in the README.
BASE_RATES = {
    LABEL_PREFIX + "is_favorited": 0.012,
    LABEL_PREFIX + "is_replied": 0.005,
    LABEL_PREFIX + "is_retweeted": 0.004,
    LABEL_PREFIX + "is_video_playback_50": 0.004,
    LABEL_PREFIX + "is_negative_feedback_v2": 0.003,
    LABEL_PREFIX + "is_good_clicked_convo_desc_favorited_or_replied": 0.002,
    LABEL_PREFIX + "is_good_clicked_convo_desc_v2": 0.0017,
    LABEL_PREFIX + "is_profile_clicked_and_profile_engaged": 0.0015,
    LABEL_PREFIX + "is_replied_reply_engaged_by_author": 0.001,
    LABEL_PREFIX + "is_report_tweet_clicked": 0.000014,
    LABEL_PREFIX + "is_bookmarked": 0.002,  # assumed
    LABEL_PREFIX + "is_shared": 0.001,  # assumed
    LABEL_PREFIX + "is_tweet_detail_dwelled_15_sec": 0.03,  # assumed
}

# Feature groups as the model sees them (after the config's truncation) and the stored
# column names the config's `renamed_features` maps them from.
GROUP_WIDTHS = {
    "continuous": 2117,
    "binary": 59,
    "user_embedding": 200,
    "user_eng_embedding": 200,
    "author_embedding": 200,
}
EMBEDDING_GROUPS = ("user_embedding", "user_eng_embedding", "author_embedding")
META_GROUPS = ("meta__user_id", "meta__author_id", "meta__tweet_id")

# Study columns stored beside the published ones.
REQUEST_COLUMN = "request_id"
COHORT_COLUMN = "cohort"
PREDICTION_EPS = 1e-7  # predictions clipped to [EPS, 1 - EPS] before a log loss, as the original's RCE
TRUE_PROB_PREFIX = "true_prob."  # + label name: the planted probability of that label


def true_prob_column(label: str) -> str:
    return TRUE_PROB_PREFIX + label


def label_named(name: str) -> str:
    """A label from its full or short name (`favorited` -> `recap.engagement.is_favorited`); the
    name unchanged when it is neither, for the caller's own error."""
    return name if name in LABELS else {short_name(label): label for label in LABELS}.get(name, name)


def short_name(label: str) -> str:
    """`recap.engagement.is_favorited` -> `favorited` (for tables and plots)."""
    return label.removeprefix(LABEL_PREFIX).removeprefix("is_")

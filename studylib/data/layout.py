"""The on-disk layout of a data set: Parquet columns, their types, the manifest.

Feature groups are stored under the original's column names (the config's
`train_data.seg_dense_schema.renamed_features` maps them to the short group names the model
uses). Widths are the ones the model sees after the config's truncation (continuous 2117 of
6000, binary 59 of 512); the discrete group, unused by the model, is not stored. Binary
features and labels are stored as int8 (the original used int64 for 0/1 values).
"""

from __future__ import annotations

import pyarrow as pa

from studylib.schema import (
    COHORT_COLUMN,
    GROUP_WIDTHS,
    LABELS,
    META_GROUPS,
    REQUEST_COLUMN,
    true_prob_column,
)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"

# Group name -> stored column name (as in recap_local_prod.yaml; a test checks they agree).
RENAMED_FEATURES = {
    "continuous": "home_recap_2022_cont__segdense_vals",
    "binary": "home_recap_2022_binary__segdense_vals",
    "author_embedding": "original_author.timelines.twhin_author_follow_embeddings.twhin_author_follow_embeddings",
    "user_embedding": "user.timelines.twhin_user_follow_embeddings.twhin_user_follow_embeddings",
    "user_eng_embedding": "user.timelines.twhin_user_engagement_embeddings.twhin_user_engagement_embeddings",
    "meta__author_id": "meta.author_id",
    "meta__user_id": "meta.user_id",
    "meta__tweet_id": "meta.tweet_id",
}

GROUP_VALUE_TYPES = {
    "continuous": pa.float32(),
    "binary": pa.int8(),
    "user_embedding": pa.float32(),
    "user_eng_embedding": pa.float32(),
    "author_embedding": pa.float32(),
}


def stored_names() -> dict[str, str]:
    return dict(RENAMED_FEATURES)


def arrow_schema(with_truth: bool) -> pa.Schema:
    fields = [pa.field(RENAMED_FEATURES[g], pa.list_(GROUP_VALUE_TYPES[g], GROUP_WIDTHS[g])) for g in GROUP_WIDTHS]
    fields += [pa.field(RENAMED_FEATURES[m], pa.int64()) for m in META_GROUPS]
    fields += [pa.field(REQUEST_COLUMN, pa.int64()), pa.field(COHORT_COLUMN, pa.string())]
    fields += [pa.field(label, pa.int8()) for label in LABELS]
    if with_truth:
        fields += [pa.field(true_prob_column(label), pa.float32()) for label in LABELS]
    return pa.schema(fields)



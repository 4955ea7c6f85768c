"""Shared fixtures: small data sets generated once per test session."""

from pathlib import Path

import pytest
import torch

from studylib.data.generate import GeneratorParams, generate, with_world

REPO = Path(__file__).resolve().parents[1]
SMALL_WORLD = {"n_users": 300, "n_authors": 60, "n_tweets": 2000, "rate_scale": 20.0}


def small_params(scenario="planted", examples=2000, seed=3, **changes) -> GeneratorParams:
    params = with_world(GeneratorParams(scenario=scenario, examples=examples, seed=seed, chunk_requests=10,
                                        shard_chunks=2, **changes), seed=seed, **SMALL_WORLD)
    return params


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """2,000 planted examples in 2 shards of 2 row groups (500 rows each)."""
    out = tmp_path_factory.mktemp("data") / "planted"
    generate(small_params(), out, progress=False)
    return out


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on 2 shared cores it avoids OpenMP spin contention (TwHIN, small runs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

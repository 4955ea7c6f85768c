"""Shared fixtures: small data sets generated once per test session."""

from pathlib import Path

import pytest
import torch

from studylib.data.generate import GeneratorParams, generate, with_world

REPO = Path(__file__).resolve().parents[1]
SMALL_WORLD = {"n_users": 300, "n_authors": 60, "n_tweets": 2000, "rate_scale": 20.0}

# Fault-injection cases (tests/test_faults.py): one entry per bad input or failing write tried,
# "clean" once it ended with exit status 2, one line and no traceback. Summarised after the run.
FAULT_CASES: dict[str, int] = {"tried": 0, "clean": 0}


def pytest_terminal_summary(terminalreporter):
    if FAULT_CASES["tried"]:
        tried, clean = FAULT_CASES["tried"], FAULT_CASES["clean"]
        terminalreporter.write_line(
            f"fault injection: {tried} cases tried, {clean} refused cleanly (exit 2, one line, nothing "
            f"half-written), {tried - clean} not")


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

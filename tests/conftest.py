"""Shared fixtures: small data sets generated once per test session; how the suite shares the cores.

`make test` runs the suite in parallel processes (pytest-xdist, `--dist loadscope`). Each process
gets an equal share of the cores for torch's threads, and its subprocesses (notebook kernels,
`torchrun`, the command line) inherit that share, so the processes never contend for one core.
Each module runs in one process, so a fixture built once per module (a trained run, the tiny study)
is built once.
"""

import os
from pathlib import Path

import pytest
import torch

from studylib.data.generate import GeneratorParams, generate, with_world

REPO = Path(__file__).resolve().parents[1]
SMALL_WORLD = {"n_users": 300, "n_authors": 60, "n_tweets": 2000, "rate_scale": 20.0}

# Fault-injection cases (tests/test_faults.py): one entry per bad input or failing write tried,
# "clean" once it ended with exit status 2, one line and no traceback. Summarised after the run.
FAULT_CASES: dict[str, int] = {"tried": 0, "clean": 0}


WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    THREADS = str(max(1, (os.cpu_count() or 1) // WORKERS))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = THREADS
    torch.set_num_threads(int(THREADS))


# Modules whose tests take minutes, longest first. `--dist loadscope` hands a whole module to one
# process (so a module's fixtures are built once); started first, the long ones do not end the run alone.
HEAVY_FIRST = ("test_study.py", "test_train.py", "test_faults.py", "test_precision.py", "test_twhin.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module's order is kept


def pytest_sessionfinish(session):
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:  # an xdist worker: hand the fault tally to the controller
        worker_output["fault_cases"] = dict(FAULT_CASES)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: `-p no:xdist` runs the suite without it
def pytest_testnodedown(node, error):
    for key, count in getattr(node, "workeroutput", {}).get("fault_cases", {}).items():
        FAULT_CASES[key] += count


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

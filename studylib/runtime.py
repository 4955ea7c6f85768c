"""Where a training process runs: its device, and its place among torchrun's processes.

Shared by the Heavy Ranker and TwHIN training loops: one process or many (`torchrun` sets
WORLD_SIZE, RANK, LOCAL_RANK), CPU (gloo) or CUDA (NCCL), with the same code.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from studylib.errors import StudyError


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # this process started the process group, so it ends it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def autocast(self):
        """bf16 autocast on CUDA (TF32 is on too); full fp32 on the CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise StudyError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise StudyError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    return torch.device(name)


def start_runtime(device_name: str) -> Runtime:
    """One process, or one of many started by torchrun (joining its process group)."""
    device = resolve_device(device_name)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 and not dist.is_initialized():
        return Runtime(device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, dist.get_rank(), dist.get_world_size(), owns)

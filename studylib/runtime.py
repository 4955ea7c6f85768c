"""Where a training process runs: its device, its precision, and its place among torchrun's processes.

Shared by the Heavy Ranker and TwHIN training loops: one process or many (`torchrun` sets
WORLD_SIZE, RANK, LOCAL_RANK), CPU (gloo) or CUDA (NCCL), with the same code.

Precision: `auto` runs the model's forward under bf16 autocast where the hardware multiplies
bf16 matrices natively (CUDA, and CPUs with the avx512_bf16 or amx_bf16 instructions: 2.2–2.5×
the fp32 GEMM rate at the model's shapes on this project's machines) and in fp32 elsewhere.
Master weights, optimizer state, loss and metrics stay fp32 in every case.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from studylib.errors import StudyError


PRECISIONS = ("auto", "fp32", "bf16")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (its /proc/cpuinfo flags name avx512_bf16 or amx_bf16)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto` -> bf16 on CUDA and on bf16-capable CPUs, fp32 elsewhere; `fp32`/`bf16` as given."""
    if name not in PRECISIONS:
        raise StudyError(f"--precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name != "auto":
        return name
    return "bf16" if device.type == "cuda" or cpu_has_bf16() else "fp32"


def precision_reason(name: str, device: torch.device) -> str:
    """Why `resolve_precision(name, device)` chose what it chose, for run records and the report."""
    resolved = resolve_precision(name, device)
    if name != "auto":
        return f"{resolved}: asked for (--precision {name})"
    if device.type == "cuda":
        return "bf16: auto on CUDA"
    if resolved == "bf16":
        return f"bf16: auto; this CPU has {' or '.join(BF16_CPU_FLAGS)}"
    return f"fp32: auto; this CPU lacks bf16 instructions ({' and '.join(BF16_CPU_FLAGS)} absent from /proc/cpuinfo)"


@dataclass
class Runtime:
    device: torch.device
    precision: str = "fp32"  # resolved: fp32 or bf16
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
        """bf16 autocast of the forward when the precision is bf16; plain fp32 (TF32 on CUDA) otherwise."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse rather than hand them back to the kernel.

    A training step frees and reallocates the same gradients and activations (~200 MB in fp32).
    By default glibc returns the freed top of its heap to the kernel, and the next step
    page-faults it back in: 14,000-34,000 faults per fp32 step on the project's CPU, and 7 % of
    the step's time (`benchmarks/heavy_ranker.py` measures with this applied, as training runs).
    Blocks up to 32 MiB (glibc's ceiling) come from the heap, which is trimmed only past 1 GiB of
    free top. The arithmetic is untouched. Returns False, changing nothing, where the C library
    has no mallopt (not glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # Both or neither: a fixed trim threshold alone turns off glibc's adaptive mmap threshold.
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise StudyError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise StudyError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    return torch.device(name)


def start_runtime(device_name: str, precision: str = "auto") -> Runtime:
    """One process, or one of many started by torchrun (joining its process group)."""
    device = resolve_device(device_name)
    precision = resolve_precision(precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        keep_freed_memory()
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 and not dist.is_initialized():
        return Runtime(device, precision)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, precision, dist.get_rank(), dist.get_world_size(), owns)

"""bf16 working copies of the Linear layers' weights, with the fp32 masters kept by the optimizer.

Under plain bf16 autocast every training step casts each fp32 Linear weight to bf16 in the
forward and each bf16 weight gradient back to fp32 in the backward: 372 separate copies of
48 M parameters a step, ~34 ms of a ~170 ms step on the project's 2-core CPU. Here the model's
forward runs (still under autocast, for the activations) on bf16 copies of those weights that
persist between steps; after the backward the bf16 gradients are cast into preallocated fp32
gradient buffers of the masters in one batched copy, the fused Adam updates the fp32 masters
and its fp32 state as before, and one batched copy refreshes the bf16 copies.

The arithmetic is the autocast step's, bit for bit: autocast rounds the same fp32 weights to
bf16 and the same bf16 gradients to fp32. What changes is that the casts run as two batched
copies into memory that is reused each step. The model object keeps its fp32 parameters, so
checkpoints, evaluation and scoring are unchanged. Used for one process; under DDP (several
processes) training keeps plain autocast, whose gradient hooks belong to the fp32 parameters.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


def linear_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every trainable nn.Linear weight and bias by state-dict name: what autocast computes in bf16."""
    found = {}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            for name, param in module.named_parameters(recurse=False):
                if param.requires_grad:
                    found[f"{module_name}.{name}" if module_name else name] = param
    return found


def bf16_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state with the Linear parameters rounded to bf16, as a bf16 forward uses them.

    Loaded back into the fp32 model (upcast, exact), it reproduces every bf16 prediction bit
    for bit at half the bytes of those parameters; the rest (norms, BatchNorm statistics,
    calibration) stays fp32, as autocast keeps it."""
    rounded = set(linear_parameters(model))
    return {name: value.to(torch.bfloat16) if name in rounded else value for name, value in model.state_dict().items()}


class Bf16WorkingCopies:
    """Persistent bf16 copies of every nn.Linear weight and bias of `model` for training steps."""

    def __init__(self, model: nn.Module):
        self.model = model
        linear = linear_parameters(model)
        self.names: list[str] = list(linear)
        self.masters: list[nn.Parameter] = list(linear.values())
        with torch.no_grad():
            self.copies = [p.detach().to(torch.bfloat16).requires_grad_() for p in self.masters]
        self.master_grads = [torch.zeros_like(p) for p in self.masters]
        self._substitutes = dict(zip(self.names, self.copies))

    def forward(self, *args, **kwargs):
        """The model's forward with the bf16 copies standing in for the Linear parameters."""
        return functional_call(self.model, self._substitutes, args, kwargs)

    def zero_grad(self) -> None:
        for copy in self.copies:
            copy.grad = None

    def gradients_to_masters(self) -> None:
        """Cast the bf16 gradients into the masters' fp32 gradient buffers (before optimizer.step)."""
        grads, buffers = [], []
        for copy, buffer, master in zip(self.copies, self.master_grads, self.masters):
            if copy.grad is None:
                master.grad = None
                continue
            grads.append(copy.grad)
            buffers.append(buffer)
            master.grad = buffer
        if grads:
            torch._foreach_copy_(buffers, grads)

    @torch.no_grad()
    def refresh(self) -> None:
        """Round the updated fp32 masters into the bf16 copies (after optimizer.step)."""
        torch._foreach_copy_(self.copies, [p.detach() for p in self.masters])

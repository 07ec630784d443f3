"""Measuring the four parts of training memory on a real model and batch (notebook 04).

    measured = measure_training_step(model, x, y)       # one AdamW step -> Breakdown (bytes)

- weights, gradients, optimizer state: the sizes of the tensors themselves. Adam's m and v appear
  lazily at the first step(); zero_grad(set_to_none=True) frees the gradients.
- activations: every tensor autograd saves for the backward passes through
  torch.autograd.graph.saved_tensors_hooks; we count each storage once (q, k and v all save the
  same LayerNorm output) and leave out the parameters (a Linear also saves its weight).
- gradient checkpointing: torch.utils.checkpoint with use_reentrant=False (the reentrant version
  gives no gradient when the block's input does not require one, as with a frozen embedding). Its
  own hooks hide the block's tensors from ours, and so does the recompute in the backward: we add
  the block inputs it keeps; the recompute peak is one block's activations, shown separately.
CPU tensors have no allocator statistics like torch.cuda.max_memory_allocated; scripts/measure_memory.py
reads whole-process peak RSS, one subprocess per configuration.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .memory import Breakdown


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the storages behind `tensors`, each storage once (views and tied weights share one)."""
    sizes = {}
    for t in tensors:
        storage = t.untyped_storage()
        sizes[storage.data_ptr()] = storage.nbytes()
    return sum(sizes.values())


def weight_bytes(model: nn.Module) -> int:
    return tensor_bytes(list(model.parameters()) + list(model.buffers()))


def gradient_bytes(model: nn.Module) -> int:
    return tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Everything in optimizer.state: Adam's exp_avg (m), exp_avg_sq (v) and a scalar step per tensor."""
    return tensor_bytes(v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v))


class SavedTensors:
    """Records what autograd saves inside the `with` block: one entry per saved tensor.

    Each record is (module, shape, dtype, bytes, kind) with kind 'new' (a storage not seen before),
    'again' (a storage already counted) or 'parameter' (a weight: not an activation).
    """

    def __init__(self, model: nn.Module, track_modules: bool = False):
        self.model, self.track_modules = model, track_modules
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.sizes: dict[int, int] = {}
        self.records: list[tuple[str, tuple[int, ...], torch.dtype, int, str]] = []
        self._where: list[str] = [""]

    @property
    def bytes(self) -> int:
        return sum(self.sizes.values())

    def add(self, t: torch.Tensor, module: str = "") -> None:
        storage = t.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        kind = "parameter" if ptr in self.params else "again" if ptr in self.sizes else "new"
        if kind == "new":
            self.sizes[ptr] = nbytes
        self.records.append((module or self._where[-1], tuple(t.shape), t.dtype, nbytes, kind))

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.add(t)
        return t  # keep the tensor itself: we only look, the backward runs as usual

    def _enter_module(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            self._where.append(name)
        return hook

    def _leave_module(self, module: nn.Module, args: tuple, output) -> None:
        self._where.pop()  # a forward hook must return None, or it would replace the output

    def __enter__(self) -> SavedTensors:
        self._handles = []
        if self.track_modules:  # remember which module is running, to label each saved tensor
            for name, module in self.model.named_modules():
                self._handles.append(module.register_forward_pre_hook(self._enter_module(name)))
                self._handles.append(module.register_forward_hook(self._leave_module))
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        for handle in self._handles:
            handle.remove()


@contextmanager
def checkpointed_blocks(model: nn.Module, kept: list | None = None, use_reentrant: bool = False):
    """Run every block of `model.blocks` under torch.utils.checkpoint; `kept` collects block inputs."""
    for block in model.blocks:
        def run(x: torch.Tensor, forward=block.forward) -> torch.Tensor:
            if kept is not None:
                kept.append(x)  # checkpoint keeps the input alive to recompute the block in the backward
            return checkpoint(forward, x, use_reentrant=use_reentrant)
        block.forward = run  # an instance attribute shadows Block.forward
    try:
        yield model
    finally:
        for block in model.blocks:
            del block.forward


def fused_adamw(params: list[nn.Parameter]) -> torch.optim.AdamW:
    """AdamW with the fused kernel: the same state (m, v, step), several times faster on a CPU."""
    return torch.optim.AdamW(params, fused=True)


def measure_training_step(model: nn.Module, idx: torch.Tensor, targets: torch.Tensor,
                          make_optimizer: Callable = fused_adamw,
                          checkpointing: bool = False) -> Breakdown:
    """One training step, measured: weights, gradients after backward, optimizer state after step(),
    activations saved by the forward (de-duplicated by storage, parameters excluded)."""
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad])
    kept: list[torch.Tensor] = []
    recipe = checkpointed_blocks(model, kept) if checkpointing else nullcontext()
    with recipe, SavedTensors(model) as saved:
        _, loss = model(idx, targets)
    for x in kept:
        saved.add(x, "checkpointed block input")
    kept.clear()
    loss.backward()
    gradients = gradient_bytes(model)
    optimizer.step()
    state = optimizer_state_bytes(optimizer)
    optimizer.zero_grad(set_to_none=True)  # frees the gradients (zero_grad() without it keeps zeros)
    return Breakdown(weight_bytes(model), gradients, state, saved.bytes)

"""NF4 from scratch: the 4-bit base under QLoRA's adapter (Dettmers et al., 2023, arXiv 2305.14314, §3).

    codes, absmax = absmax_quantize(w.reshape(-1, 64), bits=4)   # int4, one absmax per block of 64 (Eq. 1)
    nf4 = quantize_nf4(w)                                         # NF4 + double quantization, packed
    w_hat = nf4.dequantize()                                      # what the forward pass computes with
    layer = LoRALinear(NF4Linear.from_linear(linear), r=2, alpha=4)   # QLoRA: frozen 4-bit W0, fp32 A and B

Storage per weight: a 4-bit code plus a share of its block's scale. One fp32 scale per 64 weights adds 32/64 =
0.5 bits (4.5 in all); double quantization stores the scales in 8 bits, in blocks of 256, with one fp32 scale per
block of scales and one fp32 mean: 8/64 + 32/(64·256) = 0.127 bits (4.127 in all).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn as nn

from .lora import LoRALinear, _check_hparams, _resolve_targets, _tied, add_lora  # add_lora's own rules

NF4_OFFSET = 0.9677083  # the reference's outermost quantile: the mean of 1 - 1/30 and 1 - 1/32
BLOCK, SCALE_BLOCK = 64, 256  # QLoRA's block sizes for the weights and for the scales (§3)


# ---------------------------------------------------------------- checks that speak to the person

def _check_block(block, name: str = "block") -> None:
    if isinstance(block, bool) or not isinstance(block, numbers.Integral) or block < 2 or block % 2:
        raise ValueError(f"{name} must be an even integer >= 2 (two 4-bit codes share one byte), such as 64; "
                         f"got {block!r}")


def _check_bits(bits) -> None:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an integer from 2 to 8 (the codes are stored as int8), got {bits!r}")


def _check_weights(x, what: str = "the tensor") -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{what} must be a floating-point torch.Tensor to quantize, got {kind}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} contains inf or nan: one such number would become the absmax of its block "
                         "and wipe out the block. Find where it came from before quantizing.")


def as_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """x flattened into rows of `block` numbers, (n / block, block). Every block must be full."""
    _check_block(block)
    n = x.numel()
    if n % block:
        fits = [b for b in (16, 32, 64, 128, 256) if n % b == 0]
        raise ValueError(f"block size {block} does not divide the {n:,} numbers of this tensor (shape "
                         f"{tuple(x.shape)}), and every block must be full. Block sizes that fit: "
                         f"{fits if fits else 'none of 16-256; pad the tensor with zeros first'}")
    return x.reshape(-1, block)


# ---------------------------------------------------------------- absmax: int8 and int4 (QLoRA §2, Eq. 1)

def absmax_quantize(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of x (its last dim) on its own scale: codes = round(qmax · x / absmax(row)), qmax = 2^(bits-1) - 1.

    Returns the int8 codes (x's shape, in [-qmax, qmax]) and the absmax of every row, shape (..., 1).
    Whole-tensor quantization is x.reshape(1, -1); blockwise is x.reshape(-1, 64) (QLoRA §2, Eq. 1)."""
    _check_bits(bits)
    _check_weights(x)
    qmax = 2 ** (bits - 1) - 1
    absmax = x.abs().amax(dim=-1, keepdim=True)
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))  # an all-zero row: codes 0, no 0/0
    return torch.round(x / safe * qmax).to(torch.int8), absmax


def absmax_dequantize(codes: torch.Tensor, absmax: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """codes · absmax / qmax: the rounding error of each entry is at most absmax / (2 qmax)."""
    return codes.float() * (absmax / (2 ** (bits - 1) - 1))


def absmax_roundtrip(x: torch.Tensor, bits: int, block: int | None = None) -> torch.Tensor:
    """x quantized and back, with one absmax for the whole tensor (block=None) or one per block."""
    rows = x.reshape(1, -1) if block is None else as_blocks(x, block)
    codes, absmax = absmax_quantize(rows, bits)
    return absmax_dequantize(codes, absmax, bits).reshape(x.shape)


# ---------------------------------------------------------------- NF4: levels from normal quantiles (§3)

def normal_quantile(p) -> torch.Tensor:
    """Φ⁻¹(p), the standard normal's quantile function, as √2 · erfinv(2p − 1) in float64 (no scipy)."""
    return math.sqrt(2.0) * torch.erfinv(2 * torch.as_tensor(p, dtype=torch.float64) - 1)


def eq4_levels(k: int = 4) -> torch.Tensor:
    """QLoRA's Eq. 4 taken literally: q_i = ½ (Q(i / (2^k + 1)) + Q((i + 1) / (2^k + 1))), i = 0 .. 2^k − 1.
    Q(0) = −∞, so q_0 = −∞: read literally it is not a usable table."""
    n = 2 ** k
    i = torch.arange(n, dtype=torch.float64)
    return 0.5 * (normal_quantile(i / (n + 1)) + normal_quantile((i + 1) / (n + 1)))


def nf4_levels(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 values, sorted, float32, as QLoRA's reference code builds them (§3, "4-bit NormalFloat"):
    8 positive quantiles at probabilities evenly spaced from `offset` down to 0.5 (0.5 itself left out), 7
    negative ones the same way, and an exact 0; divided by the largest so that they span [−1, 1]."""
    if not 0.5 < offset < 1:
        raise ValueError(f"offset is the probability of the outermost quantile, in (0.5, 1); got {offset!r}")
    positive = normal_quantile(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -normal_quantile(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return (levels / levels.max()).float()


NF4_LEVELS = nf4_levels()


def nearest_level(x: torch.Tensor, levels: torch.Tensor = NF4_LEVELS) -> torch.Tensor:
    """The index (uint8) of the nearest of the sorted `levels` for every entry of x: the boundaries between
    two codes are the midpoints of their levels."""
    return torch.bucketize(x, (levels[1:] + levels[:-1]) / 2).to(torch.uint8)


# ---------------------------------------------------------------- two 4-bit codes per byte

def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """Codes 0..15 (uint8, an even number of them) two per byte: the first of each pair in the high 4 bits,
    as bitsandbytes does. n codes become n / 2 bytes."""
    flat = codes.reshape(-1)
    if flat.dtype != torch.uint8:
        raise TypeError(f"pack_nibbles takes uint8 codes, got {flat.dtype}; convert with .to(torch.uint8)")
    if flat.numel() % 2:
        raise ValueError(f"pack_nibbles needs an even number of codes (two per byte), got {flat.numel()}")
    if flat.numel() and int(flat.max()) > 15:
        raise ValueError(f"a 4-bit code is 0..15, but the largest code here is {int(flat.max())}")
    return (flat[0::2] << 4) | flat[1::2]


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of pack_nibbles: (n / 2,) bytes -> (n,) codes, high nibble first."""
    return torch.stack([packed >> 4, packed & 0x0F], dim=-1).reshape(-1)


# ---------------------------------------------------------------- double quantization of the scales (§3)

def quantize_scales(scales: torch.Tensor, block: int = SCALE_BLOCK) -> tuple[torch.Tensor, ...]:
    """The block scales minus their mean, in int8 with one fp32 absmax per `block` scales (the last block may
    be partial: its padding is not stored). Returns (codes int8, absmax fp32, offset fp32 (1,)).

    A simplification of the reference, which stores the centred scales in its *dynamic* 8-bit float format;
    here they are plain absmax int8, the same 8 bits per scale."""
    _check_block(block, "scale_block")
    offset = scales.mean().reshape(1)  # centred scales use the 8-bit range symmetrically
    centred = scales - offset
    pad = centred.new_zeros((-centred.numel()) % block)
    codes, absmax = absmax_quantize(torch.cat([centred, pad]).reshape(-1, block), bits=8)
    return codes.reshape(-1)[:scales.numel()], absmax.reshape(-1), offset


def dequantize_scales(codes: torch.Tensor, absmax: torch.Tensor, offset: torch.Tensor,
                      block: int = SCALE_BLOCK) -> torch.Tensor:
    pad = codes.new_zeros((-codes.numel()) % block)
    rows = torch.cat([codes, pad]).reshape(-1, block)
    return absmax_dequantize(rows, absmax[:, None], bits=8).reshape(-1)[:codes.numel()] + offset


# ---------------------------------------------------------------- one NF4 weight: what is stored, and back

@dataclass
class NF4Weight:
    """Everything QLoRA keeps for one frozen weight matrix, and nothing else."""

    packed: torch.Tensor  # uint8 (n / 2,): two 4-bit codes per byte
    scales: torch.Tensor  # int8 (n / block,) with double quantization, else the fp32 absmax of every block
    scales_absmax: torch.Tensor | None  # fp32 (ceil(n_blocks / scale_block),), double quantization only
    scales_offset: torch.Tensor | None  # fp32 (1,): the mean of the block scales, double quantization only
    shape: tuple[int, ...]
    block: int = BLOCK
    scale_block: int = SCALE_BLOCK

    def tensors(self) -> dict[str, torch.Tensor]:
        names = ("packed", "scales", "scales_absmax", "scales_offset")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def block_scales(self) -> torch.Tensor:
        if self.scales_absmax is None:
            return self.scales
        return dequantize_scales(self.scales, self.scales_absmax, self.scales_offset, self.scale_block)

    def dequantize(self) -> torch.Tensor:
        """level[code] · scale of its block, in fp32, in the original shape."""
        values = NF4_LEVELS.to(self.block_scales().device)[unpack_nibbles(self.packed).long()]
        return (values.reshape(-1, self.block) * self.block_scales()[:, None]).reshape(self.shape)

    def storage_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())


def quantize_nf4(w: torch.Tensor, block: int = BLOCK, double_quant: bool = True,
                 scale_block: int = SCALE_BLOCK) -> NF4Weight:
    """NF4 storage of w (QLoRA §3): one absmax per block of 64, every weight / absmax rounded to the nearest of
    the 16 NF4 levels, two codes per byte; with double_quant the absmax values are themselves stored in 8 bits."""
    _check_weights(w, "the weight")
    rows = as_blocks(w.detach().float(), block)
    absmax = rows.abs().amax(dim=1)
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))  # an all-zero block stays exactly zero
    packed = pack_nibbles(nearest_level(rows / safe[:, None]))
    if not double_quant:
        return NF4Weight(packed, absmax, None, None, tuple(w.shape), block, scale_block)
    codes, absmax2, offset = quantize_scales(absmax, scale_block)
    return NF4Weight(packed, codes, absmax2, offset, tuple(w.shape), block, scale_block)


def nf4_roundtrip(w: torch.Tensor, block: int = BLOCK, double_quant: bool = True) -> torch.Tensor:
    return quantize_nf4(w, block, double_quant).dequantize()


def bits_per_param(tensors: dict[str, torch.Tensor], n_params: int) -> float:
    """Measured storage: 8 · (bytes of every tensor kept) / (number of weights they stand for)."""
    return 8 * sum(t.numel() * t.element_size() for t in tensors.values()) / n_params


def relative_error(w: torch.Tensor, w_hat: torch.Tensor) -> float:
    """‖w − ŵ‖_F / ‖w‖_F: the share of the weight that quantization changed."""
    return float((w - w_hat).norm() / w.norm())


# ---------------------------------------------------------------- the frozen 4-bit Linear under a LoRA adapter

class _DequantMatmul(torch.autograd.Function):
    """x @ Wᵀ that keeps only the 4-bit module for the backward pass and dequantizes W again there, as the
    reference does: autograd would otherwise save every dequantized fp32 W until the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, module: NF4Linear) -> torch.Tensor:
        ctx.module = module
        return x @ module.weight.to(x.dtype).T  # in the computation dtype: x's (bf16 in a bf16 model)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return grad_out @ ctx.module.weight.to(grad_out.dtype), None  # W is frozen: a gradient for x only


class NF4Linear(nn.Linear):
    """A frozen Linear whose weight is kept in NF4 and dequantized in every forward pass (QLoRA §3: "we
    dequantize the storage data type to the computation data type"). It is an nn.Linear, so LoRALinear and
    add_lora accept it as `base`; but it has no weight Parameter: `weight` is computed from the 4-bit storage."""

    def __init__(self, nf4: NF4Weight, bias: torch.Tensor | None = None):
        nn.Module.__init__(self)  # not nn.Linear.__init__, which would allocate a full-precision weight
        self.out_features, self.in_features = nf4.shape
        self.block, self.scale_block = nf4.block, nf4.scale_block
        for name, t in nf4.tensors().items():
            self.register_buffer(name, t)  # buffers: saved in state_dict, moved by .to(), never trained
        self.double_quant = "scales_absmax" in nf4.tensors()
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, block: int = BLOCK, double_quant: bool = True) -> NF4Linear:
        if not isinstance(linear, nn.Linear) or isinstance(linear, NF4Linear):
            raise TypeError(f"NF4Linear.from_linear takes a full-precision nn.Linear, got {type(linear).__name__}")
        return cls(quantize_nf4(linear.weight, block, double_quant), linear.bias)

    def nf4(self) -> NF4Weight:
        get = lambda name: getattr(self, name) if self.double_quant else None  # noqa: E731
        return NF4Weight(self.packed, self.scales, get("scales_absmax"), get("scales_offset"),
                         (self.out_features, self.in_features), self.block, self.scale_block)

    @property
    def weight(self) -> torch.Tensor:
        return self.nf4().dequantize()  # (out, in) fp32, rebuilt on every call

    @weight.setter
    def weight(self, value) -> None:
        raise RuntimeError("this base weight is stored in NF4 and cannot be changed in place: merging ΔW into it "
                           "would re-quantize W0 + ΔW to 4 bits and lose most of a small update. Keep the adapter "
                           "unmerged, or merge into a full-precision copy: W0 = layer.base.weight (dequantized) "
                           "plus layer.delta_weight().")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _DequantMatmul.apply(x, self)  # dequantize, then one ordinary matmul (again in the backward)
        return out if self.bias is None else out + self.bias

    def storage_bytes(self) -> int:
        return self.nf4().storage_bytes()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"NF4 block={self.block}, double_quant={self.double_quant}")


def qlora_linear(linear: nn.Linear, r: int, alpha: float = 1.0, dropout: float = 0.0,
                 block: int = BLOCK) -> LoRALinear:
    """QLoRA for one layer: LoRALinear over the NF4 copy of `linear` (A and B stay fp32, as in §3)."""
    return LoRALinear(NF4Linear.from_linear(linear, block), r, alpha, dropout)


def quantize_base(model: nn.Module, targets: list[str] | str, block: int = BLOCK,
                  double_quant: bool = True) -> nn.Module:
    """Replace every nn.Linear whose name matches a target (add_lora's rule) by its NF4Linear, in place."""
    targets = [targets] if isinstance(targets, str) else list(targets)
    for name in _resolve_targets(model, targets):
        module = model.get_submodule(name)
        if isinstance(module, NF4Linear):
            continue  # already 4-bit
        if not isinstance(module, nn.Linear) or isinstance(module, LoRALinear):
            raise TypeError(f"cannot quantize {name}: it is a {type(module).__name__}; quantize the base first, "
                            "then add the adapter (add_qlora does both, in that order)")
        if _tied(model, module):
            raise ValueError(f"cannot quantize {name}: its weight is tied to {', '.join(_tied(model, module))}, "
                             "which would then silently stay fp32 or change too. Quantize the block projections.")
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child,
                NF4Linear.from_linear(module, block, double_quant))
    return model


def add_qlora(model: nn.Module, targets: list[str] | str = ("q_proj", "v_proj"), r: int = 8,
              alpha: float = 16.0, dropout: float = 0.0, block: int = BLOCK) -> nn.Module:
    """QLoRA (Dettmers et al., 2023, §3): the targeted Linears become frozen NF4 (double quantization, block 64)
    and get a LoRA adapter; lora_A / lora_B are named as in add_lora, so lora_state_dict, save_adapter,
    load_adapter and mark_only_lora_as_trainable work unchanged."""
    _check_hparams(r, alpha, dropout)  # refuse bad r / alpha before the model is changed at all
    quantize_base(model, targets, block)
    return add_lora(model, targets, r=r, alpha=alpha, dropout=dropout)


def nf4_storage_bytes(model: nn.Module) -> int:
    """Bytes of every NF4 weight in the model: packed codes, 8-bit scales, second-level scales, offsets."""
    return sum(m.storage_bytes() for m in model.modules() if isinstance(m, NF4Linear))

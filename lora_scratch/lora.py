"""LoRA: a frozen Linear plus a trainable low-rank update (Hu et al., 2021, arXiv 2106.09685).

    h = W0 x + (alpha / r) * B A x        W0 (out, in) frozen, A (r, in), B (out, r) trained

B starts at zero, so BA = 0 and the wrapped model starts exactly where the base was (§4.1).
Names follow PEFT (`base_layer` there is `base` here; `r`, `lora_alpha`, `lora_A`, `lora_B`,
`lora_dropout`), so moving on to PEFT needs no relearning.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn

from .files import atomic_write_json, load_tensors, save_tensors

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FORMAT = "lora_scratch.adapter/1"


def _check_hparams(r, alpha, dropout) -> None:
    """Refuse bad hyperparameters with a message that names the argument and the allowed range."""
    if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r <= 0:
        raise ValueError(f"r (the rank) must be a positive integer such as 4 or 8, got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
        raise ValueError(f"alpha must be a number > 0 (the update is scaled by alpha / r), got {alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1) (a probability; 0 turns it off), got {dropout!r}")


class LoRALinear(nn.Module):
    """A frozen nn.Linear `base` plus the low-rank path (alpha / r) * B A."""

    def __init__(self, base: nn.Linear, r: int, alpha: float = 1.0, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        _check_hparams(r, alpha, dropout)
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)  # W0 stays frozen: no gradient, no optimizer state
        self.r, self.lora_alpha, self.scaling = int(r), float(alpha), alpha / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device))
        # A random, B zero: BA = 0 at the start, yet A's gradient is nonzero once B moves.
        # Kaiming-uniform (a = sqrt 5) as in loralib and PEFT; the paper says "random Gaussian".
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.disabled = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (alpha / r) * B A, shape (out, in) like the base weight."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)  # (..., out)
        if self.merged or self.disabled:  # merged: ΔW is already inside base.weight
            return out
        # x A^T is (..., r): the update never forms the (out, in) matrix
        return out + (self.lora_dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def merge(self) -> None:
        """W0 += ΔW, so inference costs one matmul again. Only in eval() mode, only once."""
        if self.merged:
            raise RuntimeError("this LoRA layer is already merged; merging again would add ΔW twice. "
                               "Call unmerge() first if you want to merge again.")
        if self.training:
            raise RuntimeError("merge() is for inference: call model.eval() first "
                               "(train() unmerges, since A and B must stay separate to train).")
        if self.disabled:
            raise RuntimeError("this adapter is disabled; enable it before merging")
        with torch.no_grad():
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.merged = True

    def unmerge(self) -> None:
        """W0 -= ΔW. Equal to the original W0 within float tolerance, not bit for bit."""
        if not self.merged:
            raise RuntimeError("this LoRA layer is not merged, so there is nothing to unmerge")
        with torch.no_grad():
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
        self.merged = False

    def train(self, mode: bool = True) -> LoRALinear:
        if mode and self.merged:
            self.unmerge()  # training needs A and B separate from W0
        return super().train(mode)

    def set_disabled(self, disabled: bool) -> None:
        """Turn the adapter off (exactly the base's output) or on again."""
        if disabled and self.merged:
            self.unmerge()  # otherwise ΔW would still be inside base.weight
        self.disabled = disabled

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"lora_alpha={self.lora_alpha:g}, merged={self.merged}, disabled={self.disabled}")


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def _matches(name: str, target: str) -> bool:
    """PEFT's rule: a target names a module exactly or by its last dotted parts ('q_proj')."""
    return name == target or name.endswith("." + target)


def _resolve_targets(model: nn.Module, targets: list[str]) -> list[str]:
    inner = {f"{n}.{child}" for n in lora_layers(model) for child in ("base", "lora_dropout")}
    names = [n for n, _ in model.named_modules() if n and n not in inner]
    linear_leaves = sorted({n.rsplit(".", 1)[-1] for n in names
                            if isinstance(model.get_submodule(n), (nn.Linear, LoRALinear))})
    chosen = []
    for target in targets:
        hits = [n for n in names if _matches(n, target)]
        if not hits:
            partly = sorted({n.rsplit(".", 1)[-1] for n in names if target in n})
            hint = f" It is only part of: {', '.join(partly)}." if partly else ""
            raise ValueError(f"target {target!r} matches no module name.{hint} Targets must name a module "
                             f"exactly or end with its name; the Linear layers here are: "
                             f"{', '.join(linear_leaves)}")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def _tied(model: nn.Module, linear: nn.Linear) -> list[str]:
    """Names of other parameters sharing this Linear's weight (e.g. lm_head tied to tok_emb)."""
    own = {n for n, m in model.named_modules(remove_duplicate=False) if m is linear}
    return [n for n, p in model.named_parameters(remove_duplicate=False)
            if p is linear.weight and n.rsplit(".", 1)[0] not in own]


def add_lora(model: nn.Module, targets: list[str] | str = ("q_proj", "v_proj"), r: int = 8,
             alpha: float = 16.0, dropout: float = 0.0) -> nn.Module:
    """Wrap every nn.Linear whose name matches a target in a LoRALinear (in place; returns model).

    add_lora(gpt, targets=["q_proj", "v_proj"], r=4) adapts W_q and W_v of every block, as in
    the LoRA paper's main GPT-3 setting (§4.2, Table 5).
    """
    _check_hparams(r, alpha, dropout)
    targets = [targets] if isinstance(targets, str) else list(targets)
    if not targets:
        raise ValueError("targets is empty: name at least one module, e.g. ['q_proj', 'v_proj']")
    all_targets = _extend_config(model, targets, r, alpha, dropout)
    for name in _resolve_targets(model, targets):
        module = model.get_submodule(name)
        if isinstance(module, LoRALinear):
            raise ValueError(f"{name} already has a LoRA adapter; load_adapter() swaps adapters, "
                             "or start again from a fresh base")
        if not isinstance(module, nn.Linear):
            raise TypeError(f"cannot add LoRA to {name}: it is a {type(module).__name__}, and LoRA here "
                            "wraps nn.Linear layers only (e.g. q_proj, v_proj, up_proj)")
        shared = _tied(model, module)
        if shared:
            raise ValueError(f"cannot add LoRA to {name}: its weight is tied to {', '.join(shared)}. "
                             "Merging would silently change the embedding too, and safetensors refuses "
                             "shared tensors. Adapt the attention or MLP projections instead.")
        parent, _, child = name.rpartition(".")
        wrapped = LoRALinear(module, r, alpha, dropout).train(module.training)  # keep eval() if set
        setattr(model.get_submodule(parent) if parent else model, child, wrapped)
    model.lora_config = {"target_modules": all_targets, "r": int(r), "lora_alpha": float(alpha),
                         "lora_dropout": float(dropout)}
    return model


def _extend_config(model: nn.Module, targets: list[str], r: int, alpha: float, dropout: float) -> list[str]:
    """A second add_lora on the same model adds targets; one adapter file has one r, alpha, dropout."""
    old = getattr(model, "lora_config", None)
    if not old or not lora_layers(model):
        return targets
    if (old["r"], old["lora_alpha"], old["lora_dropout"]) != (r, alpha, dropout):
        raise ValueError(f"this model already has LoRA layers with r={old['r']}, alpha={old['lora_alpha']:g}, "
                         f"dropout={old['lora_dropout']:g}; add more targets with the same values, "
                         "or start from a fresh base")
    return old["target_modules"] + [t for t in targets if t not in old["target_modules"]]


def mark_only_lora_as_trainable(model: nn.Module) -> None:
    """requires_grad=True for lora_A / lora_B only; every other parameter is frozen."""
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name or name.startswith("lora_"))


ADAPTER_KEYS = (".lora_A", ".lora_B", ".lora_magnitude")  # magnitude: DoRA's trained m (variants.py)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter: {'blocks.0.attn.q_proj.lora_A': (r, in), '...lora_B': (out, r), ...}, plus DoRA's
    '...lora_magnitude' (out,) when the layers are DoRA layers."""
    return {k: v for k, v in model.state_dict().items() if any(key in k for key in ADAPTER_KEYS)}


def merge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model).values():
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model).values():
        layer.unmerge()


@contextmanager
def lora_disabled(model: nn.Module):
    """Inside the block the model computes exactly the base's outputs. Merged layers are unmerged
    first (and stay unmerged afterwards)."""
    layers = lora_layers(model).values()
    for layer in layers:
        layer.set_disabled(True)
    try:
        yield model
    finally:
        for layer in layers:
            layer.set_disabled(False)


def base_fingerprint(model: nn.Module) -> str:
    """sha256 of every parameter and buffer except the adapter and the adapted weight matrices
    (merging changes those): two bases of the same shape but different training differ here."""
    h = hashlib.sha256()
    adapted = {f"{n}.base.weight" for n in lora_layers(model)}
    for name, t in sorted(model.state_dict().items()):
        if ".lora_" in name or name in adapted:
            continue
        h.update(name.replace(".base.", ".").encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_adapter(model: nn.Module, path: str | Path, info: dict | None = None) -> Path:
    """Write path/adapter_model.safetensors (A and B only) and path/adapter_config.json."""
    if not lora_layers(model):
        raise ValueError("the model has no LoRA layers; call add_lora() first")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = dict(model.lora_config, format=FORMAT, adapted_modules=sorted(lora_layers(model)),
                  base_fingerprint=base_fingerprint(model), info=info or {})
    save_tensors(path / ADAPTER_WEIGHTS, lora_state_dict(model))
    atomic_write_json(path / ADAPTER_CONFIG, config)
    return path


def read_adapter_config(path: str | Path) -> dict:
    cfg_path = Path(path) / ADAPTER_CONFIG
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path} is missing: an adapter folder holds {ADAPTER_WEIGHTS} and "
                                f"{ADAPTER_CONFIG}, as written by save_adapter()")
    config = json.loads(cfg_path.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{cfg_path} is not a {FORMAT} adapter config (format={config.get('format')!r})")
    return config


def load_adapter(model: nn.Module, path: str | Path, allow_different_base: bool = False) -> nn.Module:
    """Load an adapter saved by save_adapter. Adds LoRA layers if the model has none; otherwise
    swaps the values in place (the layers must have the same targets and ranks)."""
    config = read_adapter_config(path)
    tensors = load_tensors(Path(path) / ADAPTER_WEIGHTS)  # refuses pickles: nothing is executed
    if any(layer.merged for layer in lora_layers(model).values()):
        raise RuntimeError("the model's LoRA layers are merged; call unmerge_lora(model) before loading")
    if not lora_layers(model):
        add_lora(model, config["target_modules"], config["r"], config["lora_alpha"], config["lora_dropout"])
        if config.get("use_dora"):  # a DoRA adapter (variants.py) needs DoRA layers for its magnitudes
            from .variants import to_dora

            to_dora(model)
    fingerprint = base_fingerprint(model)
    if fingerprint != config["base_fingerprint"] and not allow_different_base:
        raise ValueError(f"this adapter was trained on a base with fingerprint {config['base_fingerprint']}, "
                         f"but this model's base is {fingerprint}. An adapter is a small correction to one "
                         "particular base: on another base of the same shape it gives meaningless output. "
                         "Pass allow_different_base=True only if you mean to do this.")
    _copy_adapter(model, tensors)
    keys = ("target_modules", "r", "lora_alpha", "lora_dropout", "use_dora")
    model.lora_config = {k: config[k] for k in keys if k in config}
    return model


def _copy_adapter(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    own = lora_state_dict(model)
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if any(".lora_magnitude" in k for k in extra):
        raise ValueError("this is a DoRA adapter (it holds lora_magnitude); the model's layers are plain LoRA. "
                         "Make them DoRA layers first: add_lora(...), then lora_scratch.variants.to_dora(model), "
                         "then load_adapter(model, path).")
    if missing or extra:
        raise ValueError(f"adapter keys do not match the model's LoRA layers: missing in file {missing[:4]}, "
                         f"not in model {extra[:4]}. Was it trained with other targets?")
    for key, value in tensors.items():
        if own[key].shape != value.shape:
            raise ValueError(f"shape mismatch for {key}: the file has {tuple(value.shape)}, the model expects "
                             f"{tuple(own[key].shape)} (another rank or another model size?)")
    with torch.no_grad():
        for key, value in tensors.items():
            own[key].copy_(value)

"""What an adapter file holds (format lora_scratch.adapter/2), checked before any model is touched.

The config names the variant it was saved from: "lora", "rslora", "dora", "pissa", or several joined by "+" in
that order (e.g. "rslora+dora"). Each variant registers here how to recognise it on a layer and how to rebuild
it on a model fresh from add_lora; variants.py registers rsLoRA, DoRA and PiSSA when it is imported (and
lora_scratch/__init__.py imports it), so the core LoRA module never imports the variants.

Format /1 (before the variant and the weights' sha256 were recorded) is still read: its use_rslora / use_dora
flags give the variant, and its two files must match in every key, rank and shape. That is all /1 lets us verify
(weights replaced by others of the same shape would pass), so load and save_adapter it again to upgrade it; a /1
PiSSA adapter is refused, since /1 did not keep the factors PiSSA took out of the base.
"""
from __future__ import annotations

import hashlib
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from .files import check_finite

FORMAT = "lora_scratch.adapter/2"
FORMAT_V1 = "lora_scratch.adapter/1"
SHAPES = {"lora_A": ("r", "in"), "lora_B": ("out", "r"), "out": ("out",)}  # per tensor, in a layer's dims


def _check_hparams(r, alpha, dropout) -> None:
    """Refuse bad hyperparameters with a message that names the argument and the allowed range."""
    if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r <= 0:
        raise ValueError(f"r (the rank) must be a positive integer such as 4 or 8, got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
        raise ValueError(f"alpha must be a number > 0 (the update is scaled by alpha / r), got {alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1) (a probability; 0 turns it off), got {dropout!r}")


@dataclass(frozen=True)
class Variant:
    """How one LoRA variant is recognised on a layer and rebuilt on a model fresh from add_lora."""

    name: str  # in the config, e.g. "dora"
    title: str  # for people, e.g. "DoRA"
    used_by: Callable  # (layer) -> bool
    rebuild: Callable  # (model, tensors from the file) -> None, on a model fresh from add_lora
    scaling: Callable | None = None  # (alpha, r) -> the scaling that replaces alpha / r
    tensors: dict = field(default_factory=dict)  # extra per-layer tensors in the file: name -> shape (SHAPES key)
    frozen: tuple = ()  # of those, the ones a swap must find unchanged in the model
    config_keys: tuple = ()  # model.lora_config entries saved with the adapter
    flags: dict = field(default_factory=dict)  # what model.lora_config shows, e.g. {"use_dora": True}
    keeps_base: bool = True  # False: the frozen weight is no longer W0 (PiSSA keeps only a residual)


REGISTRY: dict[str, Variant] = {}  # in the order load_adapter applies them


def register_variant(variant: Variant) -> None:
    REGISTRY[variant.name] = variant


def variant_parts(name: str) -> list[str]:
    """'rslora+dora' -> ['rslora', 'dora']; 'lora' -> []."""
    parts = [] if name == "lora" else str(name).split("+")
    if any(p not in REGISTRY for p in parts) or parts != [p for p in REGISTRY if p in parts]:
        raise ValueError(f"variant {name!r} is not one this package can rebuild: 'lora', or some of "
                         f"{', '.join(REGISTRY)} joined by '+' in that order (e.g. 'rslora+dora')")
    return parts


def variant_name(parts: Iterable[str]) -> str:
    return "+".join(parts) or "lora"


def variant_title(name: str) -> str:
    return " + ".join(REGISTRY[p].title for p in variant_parts(name)) or "plain LoRA"


def variant_of(layer) -> str:
    return variant_name(p for p, v in REGISTRY.items() if v.used_by(layer))


def scaling_for(alpha: float, r: int, variant: str) -> float:
    """alpha / r (LoRA §4.1), or what the variant uses instead (rsLoRA: alpha / sqrt(r))."""
    scaling = alpha / r
    for part in variant_parts(variant):
        scaling = REGISTRY[part].scaling(alpha, r) if REGISTRY[part].scaling else scaling
    return scaling


def tensor_shapes(variant: str) -> dict[str, tuple[str, ...]]:
    """The per-layer tensors an adapter file of this variant holds, each with its shape in (r, in, out)."""
    extra = {k: SHAPES[v] for p in variant_parts(variant) for k, v in REGISTRY[p].tensors.items()}
    return {"lora_A": SHAPES["lora_A"], "lora_B": SHAPES["lora_B"], **extra}


def model_config(config: dict) -> dict:
    """What model.lora_config shows after loading: r, alpha, dropout, targets, plus each variant's flags."""
    shown = {k: config[k] for k in ("target_modules", "r", "lora_alpha", "lora_dropout")}
    for part in variant_parts(config["variant"]):
        shown |= REGISTRY[part].flags | {k: config[k] for k in REGISTRY[part].config_keys}
    return shown


def digest(items: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 (first 16 hex digits) of names and raw bytes. Any dtype works (bf16 too); for fp32 the bytes
    are exactly the ones numpy gives, so fingerprints recorded by format /1 still match."""
    h = hashlib.sha256()
    for name, t in items:
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _upgrade_v1(config: dict, tensors: dict[str, torch.Tensor], source: str) -> dict:
    if config.get("init") == "pissa":
        raise ValueError(f"{source} is a PiSSA adapter in the old format {FORMAT_V1}, which did not record the "
                         "factors PiSSA subtracted from the base, so it cannot be rebuilt. Train it again and save "
                         "it with this version.")
    parts = [p for p, flag in (("rslora", "use_rslora"), ("dora", "use_dora")) if config.get(flag)]
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()})
    old = {k: v for k, v in config.items() if k not in ("use_rslora", "use_dora", "init")}
    return old | {"variant": variant_name(parts), "dtype": dtypes[0] if len(dtypes) == 1 else "mixed"}


def check_config(config: dict, tensors: dict[str, torch.Tensor], source: str) -> dict:
    """The config, checked key by key and against the tensors it came with (keys, ranks, shapes, dtype,
    finite values). Format /1 is read as /2. Raises ValueError naming what does not fit."""
    fmt = config.get("format")
    if fmt == FORMAT_V1:
        config = _upgrade_v1(config, tensors, source)
    elif fmt != FORMAT:
        raise ValueError(f"{source} is not a {FORMAT} adapter config (format={fmt!r}); save it with save_adapter")
    kinds = {"variant": str, "target_modules": list, "r": int, "lora_alpha": (int, float),
             "lora_dropout": (int, float), "adapted_modules": list, "base_fingerprint": str, "dtype": str}
    for key, kind in kinds.items():
        if not isinstance(config.get(key), kind) or isinstance(config.get(key), bool):
            raise ValueError(f"{source}: {key!r} is missing or has the wrong type ({config.get(key)!r})")
    _check_hparams(config["r"], config["lora_alpha"], config["lora_dropout"])
    if not all(isinstance(n, str) for n in config["target_modules"] + config["adapted_modules"]):
        raise ValueError(f"{source}: target_modules and adapted_modules must be lists of module names")
    _check_tensors(config, tensors, source)
    return config


def _check_tensors(config: dict, tensors: dict[str, torch.Tensor], source: str) -> None:
    shapes = tensor_shapes(config["variant"])
    expected = {f"{m}.{k}" for m in config["adapted_modules"] for k in shapes}
    if set(tensors) != expected or not expected:
        raise ValueError(f"{source}: the weights do not hold what the config describes (missing "
                         f"{sorted(expected - set(tensors))[:4]}, unexpected {sorted(set(tensors) - expected)[:4]}): "
                         "the two files do not belong together. Save the adapter again.")
    for m in config["adapted_modules"]:
        A, B = tensors[f"{m}.lora_A"], tensors[f"{m}.lora_B"]
        if A.dim() != 2 or B.dim() != 2:
            raise ValueError(f"{source}: {m}.lora_A and .lora_B must be matrices, got shapes {tuple(A.shape)} and "
                             f"{tuple(B.shape)}. Save the adapter again.")
        dims = {"r": config["r"], "in": A.shape[-1], "out": B.shape[0]}
        for key, shape in shapes.items():
            want = tuple(dims[d] for d in shape)
            if tuple(tensors[f"{m}.{key}"].shape) != want:
                raise ValueError(f"{source}: {m}.{key} has shape {tuple(tensors[f'{m}.{key}'].shape)}, but a rank "
                                 f"{config['r']} adapter needs {want}: the weights and the config do not belong "
                                 "together. Save the adapter again.")
    wrong = sorted({k for k, t in tensors.items() if str(t.dtype).removeprefix("torch.") != config["dtype"]})
    if wrong:
        raise ValueError(f"{source}: {wrong[0]} is {tensors[wrong[0]].dtype}, the config says {config['dtype']}")
    check_finite(tensors, f"refused to load {source}", "The adapter was saved from a diverged run; train it again "
                 "with a lower learning rate.")


def base_items(state: dict, wrapped, adapted=()) -> list[tuple[str, torch.Tensor]]:
    """The base's tensors in a state dict, under their plain names ('q_proj.base.bias' -> 'q_proj.bias'),
    without the weight matrices of the `wrapped` LoRA layers and of the modules `adapted` (merging and PiSSA
    change those) and without anything the adapters added. Sorted by name."""
    wrapped = set(wrapped)
    skip = wrapped | set(adapted)
    items = []
    for key, t in state.items():
        owner = next((n for n in wrapped if key.startswith(n + ".")), None)
        if owner is not None:
            rest = key[len(owner) + 1:]
            if not rest.startswith("base."):
                continue  # A, B, DoRA's magnitude, PiSSA's factors, the merged flag
            key = f"{owner}.{rest[len('base.'):]}"
        module, _, leaf = key.rpartition(".")
        if torch.is_tensor(t) and ".lora_" not in key and not (leaf == "weight" and module in skip):
            items.append((key, t))
    return sorted(items, key=lambda item: item[0])

"""LoRA in a model: put LoRALinear layers in (add_lora), train only them, merge them, turn them off, and save
and load the adapter (Hu et al., 2021, arXiv 2106.09685, §4).

    add_lora(gpt, ["q_proj", "v_proj"], r=4, alpha=8); mark_only_lora_as_trainable(gpt)   # §4.2, Table 5
    save_adapter(gpt, "folio"); load_adapter(fresh_gpt, "folio")                          # bit-exact

Every call that changes a model is all-or-nothing: it checks first, and if it still fails midway it puts the
model back as it was. The layer itself is in lora_layer.py; what an adapter file holds is in adapter_format.py.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn

from .adapter_format import (
    FORMAT,
    REGISTRY,
    base_items,
    check_config,
    digest,
    model_config,
    scaling_for,
    tensor_shapes,
    variant_of,
    variant_parts,
    variant_title,
)
from .files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, check_finite, read_adapter_folder, write_adapter_folder
from .lora_layer import (
    ADAPTER_KEYS,
    NOT_THE_BASE,
    LoRALinear,
    _check_hparams,
    _check_wrappable,
    _put_back,
    _resolve_targets,
    _tied,
    add_lora,
    keeps_base,
    lora_layers,
    lora_state_dict,
    mark_only_lora_as_trainable,
    restored_on_error,
)

__all__ = ["ADAPTER_CONFIG", "ADAPTER_KEYS", "ADAPTER_WEIGHTS", "FORMAT", "LoRALinear", "_check_hparams", "_tied",
           "adapted_fingerprint", "adapter_config", "add_lora", "base_fingerprint", "load_adapter", "lora_disabled",
           "lora_layers", "lora_state_dict", "mark_only_lora_as_trainable", "merge_lora", "read_adapter_config",
           "save_adapter", "unmerge_lora"]  # quant.py takes add_lora's own checks (_check_hparams, _tied) from here


def merge_lora(model: nn.Module) -> None:
    """Merge every LoRA layer (§4.2), or none: if one refuses, the ones merged before it are put back."""
    layers = lora_layers(model).values()
    with restored_on_error(layers, with_base=True):
        for layer in layers:
            layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Unmerge every LoRA layer, or none."""
    layers = lora_layers(model).values()
    with restored_on_error(layers, with_base=True):
        for layer in layers:
            layer.unmerge()


@contextmanager
def lora_disabled(model: nn.Module):
    """Inside the block the model computes exactly the base's outputs. Merged layers are unmerged
    first (and stay unmerged afterwards). On exit every layer is as it was before the block, so
    blocks nest. PiSSA models are refused (their frozen weight is only the residual)."""
    layers = lora_layers(model)
    changed = [name for name, layer in layers.items() if not keeps_base(layer)]
    if changed:
        raise ValueError(f"{changed[0]}: {NOT_THE_BASE}")
    before = {layer: layer.disabled for layer in layers.values()}
    try:
        for layer in before:
            layer.set_disabled(True)
        yield model
    finally:
        for layer, was_disabled in before.items():
            layer.set_disabled(was_disabled)


# ---- fingerprints: which base an adapter belongs to ----

def base_fingerprint(model: nn.Module, adapted=()) -> str:
    """sha256 of every parameter and buffer of the base except the adapted weight matrices (the LoRA layers'
    and those named in `adapted`): two bases of the same shape but different training differ here. Raw bytes,
    so bf16 works; fp32 gives the digests format /1 recorded."""
    return digest(base_items(model.state_dict(), lora_layers(model), adapted))


def adapted_fingerprint(model: nn.Module, names) -> str:
    """sha256 of the weight matrices of the modules `names`, as they are now (PiSSA records it before it
    replaces them by residuals, and loading checks it)."""
    def weight(name: str) -> torch.Tensor:
        module = model.get_submodule(name)
        return module.base.weight if isinstance(module, LoRALinear) else module.weight
    return digest((f"{n}.weight", weight(n)) for n in sorted(names))


def _dtype_name(model: nn.Module) -> str:
    return str(next((p.dtype for p in model.parameters() if p.is_floating_point()), "none")).removeprefix("torch.")


# ---- adapter files: save_adapter / load_adapter (format in adapter_format.py, the files in files.py) ----

def _settings(layer: LoRALinear) -> tuple:
    dropout = layer.lora_dropout.p if isinstance(layer.lora_dropout, nn.Dropout) else 0.0
    return layer.r, layer.lora_alpha, float(dropout), variant_of(layer), str(layer.lora_A.dtype).removeprefix("torch.")


def adapter_config(model: nn.Module, info: dict | None = None) -> dict:
    """The config save_adapter writes, read off the LoRA layers themselves: one r, alpha, dropout, variant and
    dtype for all of them, and a scaling that those reproduce (a hand-set one would not survive a reload)."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA layers; call add_lora() first")
    settings = {name: _settings(layer) for name, layer in layers.items()}
    if len(set(settings.values())) > 1:
        raise ValueError("the LoRA layers differ in (r, alpha, dropout, variant, dtype): "
                         f"{sorted(set(settings.values()))}; one adapter file holds one setting. Build all layers "
                         "with one add_lora call.")
    r, alpha, dropout, variant, dtype = next(iter(settings.values()))
    for name, layer in layers.items():
        if layer.scaling != scaling_for(alpha, r, variant):
            raise ValueError(f"{name}.scaling is {layer.scaling:g}, but r={r} and alpha={alpha:g} give "
                             f"{scaling_for(alpha, r, variant):g} for {variant_title(variant)}: it was set by hand "
                             "and would not survive a reload. Change lora_alpha (or use use_rslora) instead.")
    shown = getattr(model, "lora_config", None) or {}
    targets = list(shown.get("target_modules") or sorted({n.rsplit(".", 1)[-1] for n in layers}))
    if sorted(_resolve_targets(model, targets)) != sorted(layers):
        raise ValueError(f"model.lora_config's target_modules {targets} do not select exactly the LoRA layers "
                         f"{sorted(layers)}; set it to the names you passed to add_lora")
    extra = {key: shown.get(key) for part in variant_parts(variant) for key in REGISTRY[part].config_keys}
    if None in extra.values():
        raise ValueError(f"model.lora_config lacks {sorted(k for k, v in extra.items() if v is None)}, which a "
                         f"{variant_title(variant)} adapter records; apply the variant with its function "
                         "(to_pissa, ...) rather than by hand")
    return {"format": FORMAT, "variant": variant, "target_modules": targets, "r": r, "lora_alpha": alpha,
            "lora_dropout": dropout, "adapted_modules": sorted(layers), "base_fingerprint": base_fingerprint(model),
            "dtype": dtype, "info": info or {}, **extra}


def save_adapter(model: nn.Module, path: str | Path, info: dict | None = None) -> Path:
    """Write path/adapter_model.safetensors (A, B and what the variant needs, with the config in its header)
    and path/adapter_config.json (the config, readable, with the weights' sha256). Everything, `info` included,
    is checked before the folder is touched; the save is all-or-nothing (files.write_adapter_folder) and leaves
    any other file in the folder alone."""
    config = adapter_config(model, info)
    tensors = {f"{name}.{key}": getattr(layer, key).detach() for name, layer in lora_layers(model).items()
               for key in tensor_shapes(config["variant"])}
    check_finite(tensors, f"refused to save the adapter, and {path} was left as it was",
                 "The training diverged: lower the learning rate (or warm up longer) and train again.")
    write_adapter_folder(Path(path), tensors, config)
    return Path(path)


def _read(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    raw, tensors = read_adapter_folder(Path(path))  # the two files verifiably belong together
    return check_config(raw, tensors, str(path)), tensors


def read_adapter_config(path: str | Path) -> dict:
    """The config of the adapter folder `path`, after checking that its weights belong to it."""
    return _read(path)[0]


def load_adapter(model: nn.Module, path: str | Path, allow_different_base: bool = False) -> nn.Module:
    """Load an adapter saved by save_adapter. A model without LoRA layers gets them, built as the file's variant
    (rsLoRA, DoRA, PiSSA), and then computes what the saved model computed, bit for bit. A model with LoRA layers
    of the same targets, rank and variant gets the file's values and alpha (a swap). Everything is checked before
    the model changes, and a failure midway puts the model back as it was."""
    config, tensors = _read(path)
    layers = lora_layers(model)
    if any(layer.merged for layer in layers.values()):
        raise RuntimeError("the model's LoRA layers are merged; call unmerge_lora(model) before loading")
    names = sorted(layers) if layers else sorted(_resolve_targets(model, config["target_modules"]))
    _check_fit(model, layers, names, config, tensors)
    if not allow_different_base:
        _check_base(model, names, config, fresh=not layers)
    (_swap if layers else _build)(model, config, tensors)
    model.lora_config = model_config(config)
    return model


def _check_fit(model: nn.Module, layers: dict, names: list[str], config: dict, tensors: dict) -> None:
    """The file's layers, variant and shapes against the model's (before anything changes)."""
    if names != sorted(config["adapted_modules"]):
        raise ValueError(f"the adapter adapts {config['adapted_modules'][:4]}..., but this model's "
                         f"{'LoRA layers are' if layers else 'targets select'} {names[:4]}...: was it trained with "
                         "other targets, or on another architecture?")
    ours = sorted({variant_of(layer) for layer in layers.values()})
    if layers and ours != [config["variant"]]:
        raise ValueError(f"this is a {variant_title(config['variant'])} adapter, but the model's LoRA layers are "
                         f"{', '.join(map(variant_title, ours))}. Load it into a model without LoRA layers (e.g. "
                         "load_adapter(load_base(), path)): the layers are then built as the file's variant.")
    for name in names:
        module = model.get_submodule(name)
        if not layers:
            _check_wrappable(model, name)
        dims = {"r": module.r if layers else config["r"], "in": module.in_features, "out": module.out_features}
        for key, shape in tensor_shapes(config["variant"]).items():
            want, got = tuple(dims[d] for d in shape), tuple(tensors[f"{name}.{key}"].shape)
            if got != want:
                raise ValueError(f"shape mismatch for {name}.{key}: the file has {got}, the model expects {want} "
                                 "(another rank or another model size?)")
    for key in (k for part in variant_parts(config["variant"]) for k in REGISTRY[part].frozen if layers):
        for name, layer in layers.items():
            same = torch.equal(getattr(layer, key), tensors[f"{name}.{key}"])
            if not same or layer.lora_alpha != config["lora_alpha"]:
                raise ValueError(f"{name}: this {variant_title(config['variant'])} adapter started from other "
                                 "initial factors (or another alpha) than the model's layers, so its frozen residual "
                                 "differs. Load it into a model without LoRA layers: load_adapter(load_base(), path).")


def _check_base(model: nn.Module, names: list[str], config: dict, fresh: bool) -> None:
    found = base_fingerprint(model, adapted=names)
    if found != config["base_fingerprint"]:
        ours = _dtype_name(model)
        hint = (f" It was saved from a {config['dtype']} model and this one is {ours}: load it into the "
                f"{config['dtype']} base, then convert with model.to(torch.{ours})." if ours != config["dtype"] else "")
        raise ValueError(f"this adapter was trained on a base with fingerprint {config['base_fingerprint']}, "
                         f"but this model's base is {found}. An adapter is a small correction to one "
                         "particular base: on another base of the same shape it gives meaningless output. "
                         f"Pass allow_different_base=True only if you mean to do this.{hint}")
    if fresh and "adapted_fingerprint" in config and adapted_fingerprint(model, names) != config["adapted_fingerprint"]:
        raise ValueError(f"this {variant_title(config['variant'])} adapter was made from adapted weights with "
                         f"fingerprint {config['adapted_fingerprint']}, but this model's are "
                         f"{adapted_fingerprint(model, names)}: it replaced those weights by residuals, so on others "
                         "it gives meaningless output. Pass allow_different_base=True only if you mean to do this.")


def _copy_values(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()  # parameters and buffers, sharing storage with the model
    with torch.no_grad():
        for key, value in tensors.items():
            own[key].copy_(value)


def _build(model: nn.Module, config: dict, tensors: dict[str, torch.Tensor]) -> None:
    """add_lora, then each variant, then the values; if a step fails, the original layers go back."""
    originals = {name: model.get_submodule(name) for name in config["adapted_modules"]}
    keeps = all(REGISTRY[part].keeps_base for part in variant_parts(config["variant"]))
    saved = [(p, p.requires_grad, None if keeps else p.detach().clone())
             for module in originals.values() for p in module.parameters()]
    old_config = model.__dict__.get("lora_config")
    try:
        add_lora(model, config["target_modules"], config["r"], config["lora_alpha"], config["lora_dropout"])
        for part in variant_parts(config["variant"]):
            REGISTRY[part].rebuild(model, tensors)
        _copy_values(model, tensors)
    except BaseException:
        _put_back(model, originals, saved, old_config)
        raise


def _swap(model: nn.Module, config: dict, tensors: dict[str, torch.Tensor]) -> None:
    """New values and the file's alpha and dropout in the model's LoRA layers; all or nothing."""
    layers = lora_layers(model).values()
    with restored_on_error(layers, with_base=False):
        for layer in layers:
            layer.lora_alpha = float(config["lora_alpha"])
            layer.scaling = scaling_for(config["lora_alpha"], config["r"], config["variant"])
            p = config["lora_dropout"]
            layer.lora_dropout = (nn.Dropout(p) if p > 0 else nn.Identity()).train(layer.training)
        _copy_values(model, tensors)

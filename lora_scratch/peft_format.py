"""PEFT's LoRA files for GPT-2, read and written without PEFT (notebook 13; lora_scratch.interop re-exports it all).

    save_peft_adapter(gpt, "folio_peft")              # then PeftModel.from_pretrained(gpt_to_hf(base), "folio_peft")
    load_peft_adapter(fresh_gpt, "a_peft_adapter")    # a PEFT LoRA for GPT-2, into our LoRA layers

GPT-2 fuses W_q, W_k, W_v into one Conv1D, c_attn (in C, out 3C), so a LoRA on c_attn is one A (R, C) and one
B (3C, R): three LoRAs that share A, each with its third of B's rows (split_c_attn_lora). The other way round,
separate LoRAs on W_q and W_v of rank r are one LoRA of rank 2r on c_attn: the A's stacked, B block-structured with
zeros where a projection has no LoRA (fuse_qkv_lora). Both are exact: B A has one row block per projection.
Pure tensors and files (safetensors + JSON): no transformers, no peft.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import torch

from .adapter_format import variant_of, variant_title
from .files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, atomic_write_json, check_finite, read_safetensors, save_tensors
from .gpt import GPT
from .lora_layer import _check_wrappable, _put_back, add_lora, lora_layers

__all__ = ["compact_lora", "fuse_qkv_lora", "load_peft_adapter", "save_peft_adapter", "split_c_attn_lora"]

HF_NAME = {"attn.q_proj": "attn.c_attn", "attn.k_proj": "attn.c_attn", "attn.v_proj": "attn.c_attn",
           "attn.o_proj": "attn.c_proj", "mlp.up_proj": "mlp.c_fc", "mlp.down_proj": "mlp.c_proj"}
QKV = ("attn.q_proj", "attn.k_proj", "attn.v_proj")  # c_attn's three column blocks, in this order
PREFIX = "base_model.model."  # PEFT's keys: the PeftModel, then the model it wraps


# ---- LoRA on the fused c_attn: pure tensor functions ----

def fuse_qkv_lora(q=None, k=None, v=None) -> tuple[torch.Tensor, torch.Tensor]:
    """LoRAs (A (r, C), B (C, r)) on W_q, W_k, W_v, all with one scaling (None: no LoRA there), as one LoRA on
    c_attn: A (R, C), B (3C, R). The A's are stacked and B is block-structured, R the sum of the ranks:

        B A = [[B_q, 0], [0, 0], [0, B_v]] @ [[A_q], [A_v]] = [[B_q A_q], [0], [B_v A_v]]      (k without LoRA)

    LoRAs that share one A (what split_c_attn_lora gives) keep it: R = r and B = [B_q; B_k; B_v]."""
    loras = [q, k, v]
    given = [lora for lora in loras if lora is not None]
    if not given:
        raise ValueError("fuse_qkv_lora needs a LoRA (A, B) for at least one of q, k, v")
    shared = all(torch.equal(A, given[0][0]) for A, _ in given)
    A = given[0][0] if shared else torch.cat([A for A, _ in given])  # (R, C)
    C = given[0][1].shape[0]
    B = A.new_zeros(3 * C, A.shape[0])  # (3C, R): row block i is projection i's output
    col = 0
    for i, lora in enumerate(loras):
        if lora is not None:
            r = lora[0].shape[0]
            start = 0 if shared else col
            B[i * C:(i + 1) * C, start:start + r] = lora[1]
            col += r
    return A, B


def split_c_attn_lora(A: torch.Tensor, B: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """A LoRA on c_attn (A (R, C), B (3C, R)) as three LoRAs (q, k, v) that share A, each with its third of B."""
    if B.shape[0] % 3 or B.shape[1] != A.shape[0]:
        raise ValueError(f"a c_attn LoRA has A (R, C) and B (3C, R); got A {tuple(A.shape)}, B {tuple(B.shape)}")
    return tuple((A, b) for b in B.split(B.shape[0] // 3))


def compact_lora(A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The same LoRA without the columns of B that are all zero and A's matching rows: they add nothing to B A.
    None if B is all zero (no LoRA at all)."""
    keep = B.ne(0).any(dim=0)
    return (A[keep], B[:, keep]) if keep.any() else None


# ---- PEFT's adapter files ----

def _hf_name(name: str) -> str:
    """'blocks.3.attn.q_proj' -> 'transformer.h.3.attn.c_attn'."""
    m = re.fullmatch(r"blocks\.(\d+)\.(attn\.[qkvo]_proj|mlp\.up_proj|mlp\.down_proj)", name)
    if not m:
        raise ValueError(f"{name} is not one of our GPT's projections, which are all GPT-2 has a place for")
    return f"transformer.h.{m[1]}.{HF_NAME[m[2]]}"


def _short_names(ranks: dict[str, int], n_layer: int) -> dict[str, int]:
    """{target: rank}: one target per kind of layer ('c_attn', 'q_proj'; 'attn.c_proj', since GPT-2's MLP has a
    c_proj too) when every block has it at one rank, else the full module names."""
    kinds: dict[str, list[str]] = {}
    for name in ranks:
        kinds.setdefault(re.sub(r"^.*?\.\d+\.", "", name), []).append(name)  # 'transformer.h.3.attn.c_attn'
    out: dict[str, int] = {}
    for kind, names in sorted(kinds.items()):
        if len(names) == n_layer and len({ranks[n] for n in names}) == 1:
            out[kind if kind.endswith("c_proj") else kind.split(".")[-1]] = ranks[names[0]]
        else:
            out |= {n: ranks[n] for n in sorted(names)}
    return out


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def _one(values, what: str):
    values = list(values)
    if any(not math.isclose(v, values[0], rel_tol=1e-6) for v in values):
        raise ValueError(f"the LoRA layers differ in {what} ({sorted(set(values))}); one adapter holds one")
    return values[0]


def _gpt2_layout(layers: dict) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Our LoRAs in GPT-2's layout: {PEFT's key: tensor} and {GPT-2 module: rank}; q, k, v fused into c_attn."""
    grouped: dict[str, dict[str, tuple]] = {}
    for name, layer in layers.items():
        grouped.setdefault(_hf_name(name), {})[name.split(".", 2)[2]] = (layer.lora_A.detach(), layer.lora_B.detach())
    tensors, ranks = {}, {}
    for hf_name, parts in sorted(grouped.items()):
        A, B = fuse_qkv_lora(*(parts.get(p) for p in QKV)) if hf_name.endswith("c_attn") else next(iter(parts.values()))
        tensors |= {f"{PREFIX}{hf_name}.lora_A.weight": A.contiguous(), f"{PREFIX}{hf_name}.lora_B.weight": B}
        ranks[hf_name] = A.shape[0]
    return tensors, ranks


def save_peft_adapter(model: GPT, path: str | Path) -> Path:
    """Write our LoRA adapter as PEFT writes a LoRA for GPT-2: path/adapter_model.safetensors with keys
    'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight' (R, in) and '...lora_B.weight' (out, R), and
    path/adapter_config.json. PeftModel.from_pretrained(gpt_to_hf(base), path) then gives our logits.

    q/k/v LoRAs go into c_attn with fuse_qkv_lora, at rank R = (projections adapted) * r. PEFT scales by
    lora_alpha / R, so c_attn's alpha is our scaling times R (through rank_pattern and alpha_pattern when the
    other layers keep rank r); every layer then gets our alpha / r. rsLoRA is written as plain LoRA with that alpha."""
    layers = lora_layers(model)
    if not isinstance(model, GPT) or not layers:
        raise ValueError("save_peft_adapter saves the LoRA layers of our GPT; call add_lora(model, ...) first")
    for name, layer in layers.items():
        if variant_of(layer) not in ("lora", "rslora"):
            raise ValueError(f"{name} is {variant_title(variant_of(layer))}: only plain LoRA and rsLoRA map onto "
                             "PEFT's plain LoRA on GPT-2 (DoRA's magnitudes and PiSSA's residual base do not)")
    scaling = _one((layer.scaling for layer in layers.values()), "scaling")
    dropout = _one((getattr(layer.lora_dropout, "p", 0.0) for layer in layers.values()), "dropout")
    tensors, ranks = _gpt2_layout(layers)
    check_finite(tensors, f"refused to save the adapter, and {path} was left as it was", "The training diverged.")
    targets = _short_names(ranks, model.config.n_layer)
    r = Counter(targets.values()).most_common(1)[0][0]  # the usual rank; the others go into rank_pattern
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": None, "revision": None,
              "r": r, "lora_alpha": _num(scaling * r), "target_modules": list(targets),
              "rank_pattern": {t: R for t, R in targets.items() if R != r},
              "alpha_pattern": {t: _num(scaling * R) for t, R in targets.items() if R != r}, "lora_dropout": dropout,
              "fan_in_fan_out": True, "bias": "none", "use_rslora": False, "use_dora": False,
              "init_lora_weights": True, "inference_mode": True, "modules_to_save": None,
              "layers_to_transform": None, "layers_pattern": None}
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; an adapter is saved as a folder")
    save_tensors(path / ADAPTER_WEIGHTS, tensors, {"format": "pt"})
    atomic_write_json(path / ADAPTER_CONFIG, config)
    return path


_OFF = {"use_dora": "DoRA", "lora_bias": "trained LoRA biases (lora_bias)", "modules_to_save": "fully trained "
        "modules (modules_to_save)", "trainable_token_indices": "trained token embeddings", "target_parameters":
        "LoRA on parameters (target_parameters)", "layer_replication": "layer replication",
        "alora_invocation_tokens": "activated LoRA (aLoRA)"}
_KEY = re.compile(r"transformer\.h\.(\d+)\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.lora_([AB])\.weight")


def _read_peft(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """PEFT's adapter_config.json and weights, refusing what is not a plain LoRA."""
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} holds no readable {ADAPTER_CONFIG} ({e}); is it a PEFT adapter folder?") from None
    if str(config.get("format", "")).startswith("lora_scratch.adapter"):
        raise ValueError(f"{path} is one of our adapters (save_adapter's format): load it with load_adapter")
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{path} is a {config.get('peft_type')!r} PEFT adapter; load_peft_adapter reads LoRA only")
    r, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(r, int) or r <= 0 or not isinstance(alpha, int | float) or alpha <= 0:
        raise ValueError(f"{path}: its {ADAPTER_CONFIG} needs r (a positive integer) and lora_alpha (a number)")
    used = [what for key, what in _OFF.items() if config.get(key)]
    if config.get("bias", "none") != "none":
        used.append(f"trained base biases (bias={config['bias']!r})")
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.startswith(("pissa", "olora", "corda", "loftq")):
        used.append(f"init_lora_weights={init!r}, which changes the base weights")
    if used:
        raise ValueError(f"{path} uses {', '.join(used)}: our LoRA layers hold a plain LoRA only")
    if not (path / ADAPTER_WEIGHTS).exists():
        raise ValueError(f"{path} has no {ADAPTER_WEIGHTS}; we read safetensors only (never a pickle such as "
                         "adapter_model.bin): save it with PEFT's save_pretrained(safe_serialization=True)")
    tensors = read_safetensors(path / ADAPTER_WEIGHTS)[0]
    check_finite(tensors, f"refused to load {path}", "The adapter comes from a diverged run.")
    return config, {k.removeprefix(PREFIX): v for k, v in tensors.items()}


def _pattern(patterns: dict, name: str, default):
    """PEFT's rank_pattern / alpha_pattern rule: the first key that matches the end of the module name."""
    return next((v for k, v in patterns.items() if re.match(rf"(.*\.)?({k})$", name)), default)


def _peft_loras(model: GPT, config: dict, tensors: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """{GPT-2 module name: (A, B, scaling)}, each checked against the shapes of our model in GPT-2's layout."""
    unknown = [k for k in tensors if not _KEY.fullmatch(k)]
    if unknown:
        raise ValueError(f"this is not a LoRA adapter for GPT-2's c_attn, attn.c_proj, c_fc, mlp.c_proj (its "
                         f"target_modules: {config.get('target_modules')}); it holds e.g. {unknown[0]!r}")
    C, n = model.config.n_embd, model.config.n_layer
    dims = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    loras = {}
    for name in sorted({k.rsplit(".", 2)[0] for k in tensors}):
        layer, kind = _KEY.fullmatch(f"{name}.lora_A.weight").group(1, 2)
        if int(layer) >= n:
            raise ValueError(f"the adapter has a LoRA on {name}, but this model has {n} blocks: it was made for "
                             "another base")
        A, B = tensors.get(f"{name}.lora_A.weight"), tensors.get(f"{name}.lora_B.weight")
        r = _pattern(config.get("rank_pattern") or {}, name, config["r"])
        alpha = _pattern(config.get("alpha_pattern") or {}, name, config["lora_alpha"])
        want = ((r, dims[kind][0]), (dims[kind][1], r))  # A (r, in), B (out, r)
        if A is None or B is None or (tuple(A.shape), tuple(B.shape)) != want:
            shapes = [None if t is None else tuple(t.shape) for t in (A, B)]
            raise ValueError(f"{name}: the adapter's lora_A, lora_B have shapes {shapes}, but rank {r} on this "
                             f"model (n_embd={C}) needs {list(want)}: the adapter was made for another base")
        loras[name] = (A, B, alpha / (math.sqrt(r) if config.get("use_rslora") else r))
    if not loras:
        raise ValueError("the adapter holds no LoRA weights")
    return loras


def _our_loras(loras: dict) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float]:
    """GPT-2's LoRAs as ours: c_attn's split into q, k, v sharing A. Columns of B that are all zero are dropped
    (compact_lora) when that leaves one rank everywhere: a c_attn LoRA saved from our q and v LoRAs then comes back
    as exactly those. Our layers hold one rank and one scaling, so the adapter must have one too."""
    to_ours = {hf: ours for ours, hf in HF_NAME.items() if ours not in QKV}
    full, scalings = {}, []
    for name, (A, B, scaling) in loras.items():
        head, kind = name.rsplit(".", 2)[0].replace("transformer.h.", "blocks."), name.split(".", 3)[3]
        parts = zip(QKV, split_c_attn_lora(A, B)) if kind == "attn.c_attn" else [(to_ours[kind], (A, B))]
        full |= {f"{head}.{ours}": lora for ours, lora in parts}
        scalings += [scaling]
    scaling = _one(scalings, "scaling (lora_alpha / r)")
    small = {n: c for n, lora in full.items() if (c := compact_lora(*lora)) is not None}
    plan = small if small and len({A.shape[0] for A, _ in small.values()}) == 1 else full
    _one((A.shape[0] for A, _ in plan.values()), "rank (rank_pattern)")
    return plan, scaling


def load_peft_adapter(model: GPT, path: str | Path) -> GPT:
    """Load a PEFT LoRA adapter for GPT-2 (from save_pretrained, or save_peft_adapter) into our GPT, which gets LoRA
    layers (add_lora) computing PEFT's logits. c_attn's LoRA becomes three LoRAs sharing A (split_c_attn_lora);
    rsLoRA comes in as plain LoRA with alpha set for the same scaling.
    Everything is checked first; the model must have no LoRA layers yet, and on any failure it is left as it was."""
    if not isinstance(model, GPT):
        raise TypeError(f"load_peft_adapter loads into our GPT, got {type(model).__name__}")
    config, tensors = _read_peft(Path(path))
    plan, scaling = _our_loras(_peft_loras(model, config, tensors))
    if lora_layers(model):
        raise ValueError("this model already has LoRA layers; load the PEFT adapter into a model without them "
                         "(load_base(), or gpt_from_hf(...))")
    for name in plan:
        _check_wrappable(model, name)
    r = next(iter(plan.values()))[0].shape[0]
    targets = list(_short_names({n: r for n in plan}, model.config.n_layer))
    originals = {name: model.get_submodule(name) for name in plan}
    saved = [(p, p.requires_grad, None) for m in originals.values() for p in m.parameters()]
    old_config = model.__dict__.get("lora_config")
    try:
        add_lora(model, targets, r, scaling * r, float(config.get("lora_dropout") or 0.0))
        with torch.no_grad():
            for name, (A, B) in plan.items():
                model.get_submodule(name).lora_A.copy_(A)
                model.get_submodule(name).lora_B.copy_(B)
    except BaseException:
        _put_back(model, originals, saved, old_config)
        raise
    return model

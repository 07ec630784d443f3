"""Our GPT and LoRA next to 🤗 transformers and PEFT (notebook 13): what you built is what they compute.

    hf = gpt_to_hf(base); gpt_from_hf(hf)            # a transformers GPT2LMHeadModel with our weights, and back
    save_peft_adapter(gpt, "folio_peft")              # then PeftModel.from_pretrained(gpt_to_hf(base), "folio_peft")
    load_peft_adapter(fresh_gpt, "a_peft_adapter")    # a PEFT LoRA for GPT-2, into our LoRA layers

GPT-2 keeps its projections in Conv1D layers, weight (in, out): the transpose of nn.Linear's (out, in). It fuses
W_q, W_k, W_v into one c_attn (in C, out 3C), so a LoRA on c_attn is one A (R, C) and one B (3C, R): three LoRAs
that share A, each with its third of B's rows (split_c_attn_lora). The other way round, separate LoRAs on W_q and
W_v of rank r are one LoRA of rank 2r on c_attn: the A's stacked, B block-structured with zeros where a projection
has no LoRA (fuse_qkv_lora). Both are exact: B A has one row block per projection.

The one module that imports transformers, and only inside the functions that need it, so the rest of the package
stays from scratch. The PEFT functions read and write PEFT's files (safetensors + JSON) and need neither library.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import torch
import torch.nn as nn

from .adapter_format import variant_of, variant_title
from .files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, atomic_write_json, check_finite, read_safetensors, save_tensors
from .gpt import GPT, GPTConfig
from .lora_layer import _check_wrappable, _put_back, add_lora, lora_layers

__all__ = ["c_attn_to_qkv", "compact_lora", "fuse_qkv_lora", "gpt_from_hf", "gpt_to_hf", "load_peft_adapter",
           "save_peft_adapter", "split_c_attn_lora"]

INSTALL = 'pip install -e ".[interop]"'
GELU = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}  # GPT-2's activation -> ours
HF_NAME = {"attn.q_proj": "attn.c_attn", "attn.k_proj": "attn.c_attn", "attn.v_proj": "attn.c_attn",
           "attn.o_proj": "attn.c_proj", "mlp.up_proj": "mlp.c_fc", "mlp.down_proj": "mlp.c_proj"}
QKV = ("attn.q_proj", "attn.k_proj", "attn.v_proj")  # c_attn's three column blocks, in this order
PREFIX = "base_model.model."  # PEFT's keys: the PeftModel, then the model it wraps


def _transformers():
    try:
        import transformers
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        raise ImportError("lora_scratch.interop needs transformers (and peft for its notebook), the optional "
                          f"`interop` extra. From the repository root: {INSTALL}") from None
    return transformers, Conv1D


# ---- weights: GPT-2 <-> our GPT ----

def _weight_pairs(model: GPT, hf: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ours, GPT-2's) pairs of views of the same shape, to copy either way. Conv1D weights are (in, out), so ours
    appear transposed; c_attn's columns are q, k, v. The heads are tied on both sides: nothing to copy."""
    t, C = hf.transformer, model.config.n_embd
    pairs = [(model.tok_emb.weight, t.wte.weight), (model.pos_emb.weight, t.wpe.weight),
             (model.ln_f.weight, t.ln_f.weight), (model.ln_f.bias, t.ln_f.bias)]
    for ours, theirs in zip(model.blocks, t.h, strict=True):
        for ln in ("ln_1", "ln_2"):
            pairs += [(getattr(ours, ln).weight, getattr(theirs, ln).weight),
                      (getattr(ours, ln).bias, getattr(theirs, ln).bias)]
        for i, proj in enumerate((ours.attn.q_proj, ours.attn.k_proj, ours.attn.v_proj)):
            cols = slice(i * C, (i + 1) * C)
            pairs += [(proj.weight.T, theirs.attn.c_attn.weight[:, cols]), (proj.bias, theirs.attn.c_attn.bias[cols])]
        for linear, conv in ((ours.attn.o_proj, theirs.attn.c_proj), (ours.mlp.up_proj, theirs.mlp.c_fc),
                             (ours.mlp.down_proj, theirs.mlp.c_proj)):
            pairs += [(linear.weight.T, conv.weight), (linear.bias, conv.bias)]
    return pairs


def _gpt2_problems(hf: nn.Module, Conv1D: type) -> list[str]:
    """What in a GPT2LMHeadModel our GPT cannot compute (empty: it fits)."""
    c = hf.config
    fits = [(c.activation_function in GELU, f"activation_function={c.activation_function!r} (ours: {', '.join(GELU)})"),
            (c.n_inner in (None, 4 * c.n_embd), f"n_inner={c.n_inner} (ours: 4 * n_embd = {4 * c.n_embd})"),
            (getattr(c, "scale_attn_weights", True), "scale_attn_weights=False (ours divides by sqrt(head size))"),
            (not getattr(c, "scale_attn_by_inverse_layer_idx", False), "scale_attn_by_inverse_layer_idx=True"),
            (not getattr(c, "add_cross_attention", False), "add_cross_attention=True (ours is decoder-only)"),
            (c.layer_norm_epsilon == 1e-5, f"layer_norm_epsilon={c.layer_norm_epsilon} (ours: 1e-5)"),
            (torch.equal(hf.lm_head.weight, hf.transformer.wte.weight), "an output head that is not its token "
             "embedding (tie_word_embeddings=False; ours is tied)")]
    problems = [why for ok, why in fits if not ok]
    wrapped = [n for n, m in hf.named_modules() if n.endswith(("c_attn", "c_proj", "c_fc")) and type(m) is not Conv1D]
    if wrapped:
        problems.append(f"{wrapped[0]} is a {type(hf.get_submodule(wrapped[0])).__name__}, not GPT-2's Conv1D (a PEFT "
                        "or quantized layer?): merge_and_unload() a PEFT model first, or load its adapter with "
                        "load_peft_adapter")
    return problems


def gpt_from_hf(hf_model: nn.Module) -> GPT:
    """Our GPT with the weights of a transformers GPT2LMHeadModel of any size; same logits in eval mode (fp32
    tolerance). GPT-2's gelu_new becomes gelu_approximate="tanh". Our one dropout rate is GPT-2's resid_pdrop."""
    transformers, Conv1D = _transformers()
    if not isinstance(hf_model, transformers.GPT2LMHeadModel):
        kind = getattr(getattr(hf_model, "config", None), "model_type", None)
        hint = (" It is a PEFT model: call merge_and_unload() for a plain one, or load its adapter into our GPT with "
                "load_peft_adapter." if hasattr(hf_model, "peft_config") else "")
        raise TypeError(f"gpt_from_hf takes a transformers GPT2LMHeadModel (GPT-2's layout), got "
                        f"{type(hf_model).__name__} (model_type {kind!r}).{hint}")
    problems = _gpt2_problems(hf_model, Conv1D)
    if problems:
        raise ValueError("this GPT-2 does not fit our GPT: " + "; ".join(problems))
    c = hf_model.config
    cfg = GPTConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer, n_head=c.n_head,
                    n_embd=c.n_embd, dropout=float(c.resid_pdrop), bias=True,
                    gelu_approximate=GELU[c.activation_function])
    wte = hf_model.transformer.wte.weight
    model = GPT(cfg).to(device=wte.device, dtype=wte.dtype)
    with torch.no_grad():
        for ours, theirs in _weight_pairs(model, hf_model):
            ours.copy_(theirs)
    return model.eval()


def gpt_to_hf(model: GPT) -> nn.Module:
    """A transformers GPT2LMHeadModel (in eval mode) holding our GPT's weights; same logits (fp32 tolerance).
    A model with LoRA layers is refused: pass the base, and the adapter through save_peft_adapter."""
    transformers, _ = _transformers()
    if not isinstance(model, GPT):
        raise TypeError(f"gpt_to_hf takes our GPT, got {type(model).__name__}")
    if lora_layers(model):
        raise ValueError("this GPT has LoRA layers. Convert the base and save the adapter in PEFT's format: "
                         "PeftModel.from_pretrained(gpt_to_hf(base), path) after save_peft_adapter(model, path); "
                         "or fold the adapter in first with serve.merge_and_unload(model)")
    cfg = model.config
    if not cfg.bias:
        raise ValueError("GPT-2 has biases in every layer; this GPT was built with bias=False")
    act = "gelu_new" if cfg.gelu_approximate == "tanh" else "gelu"
    hf_cfg = transformers.GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                                     n_layer=cfg.n_layer, n_head=cfg.n_head, activation_function=act,
                                     resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                                     layer_norm_epsilon=1e-5, bos_token_id=None, eos_token_id=None,
                                     tie_word_embeddings=True)
    emb = model.tok_emb.weight
    hf = transformers.GPT2LMHeadModel(hf_cfg).to(device=emb.device, dtype=emb.dtype)
    with torch.no_grad():
        for ours, theirs in _weight_pairs(model, hf):
            theirs.copy_(ours)
    return hf.eval()


def c_attn_to_qkv(weight: torch.Tensor, bias: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """GPT-2's fused c_attn, a Conv1D with weight (C, 3C) = (in, out) and bias (3C,), as three pairs (W, b) in
    nn.Linear's layout, W (C, C) = (out, in), for q, k and v: the column blocks of weight, each transposed
    (notebook 13's exercise)."""
    C = weight.shape[0]
    return tuple((w.T.contiguous(), b.clone()) for w, b in zip(weight.split(C, dim=1), bias.split(C)))


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

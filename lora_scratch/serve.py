"""Serving LoRA: merging, what low precision loses, and the storage of many adapters on one base.

Hu et al., 2021 (arXiv 2106.09685) §4.2: W = W0 + BA can be computed and stored, so inference costs exactly
what the base costs; and because only BA differs between tasks, one base serves many tasks — 100 GPT-3
models cost ≈ 354 GB instead of 35 TB.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def merge_weight(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, scaling: float) -> torch.Tensor:
    """W0 + scaling * B A: W (out, in), A (r, in), B (out, r). A new tensor in W's dtype; W is left unchanged.
    Computed in at least fp32 and rounded once, as LoRALinear.merged_weight (bf16 would round B A, then the sum)."""
    wide = torch.promote_types(W.dtype, torch.float32)
    return (W.to(wide) + scaling * (B.to(wide) @ A.to(wide))).to(W.dtype)


def merged_linear(layer: nn.Module) -> nn.Linear:
    """A new plain nn.Linear that computes what the LoRALinear `layer` computes, with ΔW folded into the
    weight (W0 + scaling · B A; for a DoRA layer its m · V / ||V||_c), the base's bias, dtype and device.
    `layer` is left as it was."""
    base = layer.base
    # merged_weight is W0 + ΔW, or DoRA's m · V / ||V||_c (not additive), rounded once to the base's dtype
    weight = base.weight if layer.merged else layer.merged_weight()
    out = nn.Linear(layer.in_features, layer.out_features, bias=base.bias is not None,
                    dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        out.weight.copy_(weight)
        if base.bias is not None:
            out.bias.copy_(base.bias)
    return out.eval()


def bf16_roundtrip(t: torch.Tensor) -> torch.Tensor:
    """Store in bfloat16 (8 significant bits), read back as fp32."""
    return t.to(torch.bfloat16).float()


def int4_roundtrip(t: torch.Tensor, block: int = 64) -> torch.Tensor:
    """Blockwise absmax 4-bit (levels -7..7, one fp32 scale per `block` numbers), read back as fp32.
    A simple stand-in for NF4 (notebook 09 builds the real one)."""
    flat = t.reshape(-1, block)
    scale = flat.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 7
    return (torch.round(flat / scale).clamp(-7, 7) * scale).reshape(t.shape)


def merge_loss(W: torch.Tensor, delta: torch.Tensor, roundtrip) -> tuple[float, float]:
    """What merging ΔW into a low-precision W loses: (share of ΔW's entries that vanish entirely,
    relative error ‖applied − ΔW‖_F / ‖ΔW‖_F), where applied = stored(W + ΔW) − stored(W)."""
    applied = roundtrip(W + delta) - roundtrip(W)
    vanished = float((applied == 0).float().mean())
    return vanished, float(torch.linalg.norm(applied - delta) / torch.linalg.norm(delta))


def storage_bytes(n_base: int, n_adapter: int, n_tenants: int, bytes_per_param: int = 2) -> int:
    """One shared base plus one adapter per tenant (not n_tenants full copies)."""
    return (n_base + n_tenants * n_adapter) * bytes_per_param


def full_copies_bytes(n_base: int, n_tenants: int, bytes_per_param: int = 2) -> int:
    """The alternative: every tenant stores its own fine-tuned copy of the whole model."""
    return n_tenants * n_base * bytes_per_param


def merge_and_unload(model: torch.nn.Module) -> torch.nn.Module:
    """Merge every LoRA layer and put its plain nn.Linear back in its place (PEFT's merge_and_unload).

    Merged weights left inside the LoRALinear wrappers still cost one extra Python module call per layer;
    unloaded, the model is a plain GPT again with exactly the base's modules. In place; returns model."""
    from .lora import lora_layers

    model.eval()  # merging is defined in eval mode (the merge contract)
    for name, layer in lora_layers(model).items():
        if not layer.merged:
            layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer.base)
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


# ---- many adapters in one batch (notebook 12) ----
#
# Swapping adapters serves one request at a time. S-LoRA (Sheng et al., 2023, arXiv 2311.03285) and Punica (Chen et
# al., 2023, arXiv 2310.18547) keep every adapter unmerged and decode requests for different adapters in one batch:
# the base matmul x W0^T runs once for all rows, and each row adds its own low-rank term, x_i A_i^T B_i^T, with A_i,
# B_i gathered from a stack of all adapters (Punica's BGMV kernel: batched gather matrix-vector). Here the gather is
# an index into a stacked tensor and the per-row products are two torch.bmm calls.


class AdapterStack:
    """Every adapter's A and B for each adapted module, stacked along a first "slot" axis. Slot 0 is the base
    (zeros), slot i+1 the i-th adapter. Ranks are padded with zeros to the largest one, and a module that an
    adapter leaves alone holds zeros for it: a zero row of A and a zero column of B add exactly nothing.

        A[module] (slots, r_max, in)    B[module] (slots, out, r_max)    scaling (slots,)
    """

    def __init__(self, base: nn.Module, adapters: dict[str, str]):
        from .adapter_format import scaling_for, variant_title
        from .lora import _read, base_fingerprint, lora_layers

        if not isinstance(adapters, dict):
            raise TypeError(f"adapters must be a dict from names to adapter folders, got {type(adapters).__name__}")
        if lora_layers(base):
            raise ValueError("base must be a plain GPT without LoRA layers (each adapter is applied per request); "
                             "use a fresh load_base(), or serve.merge_and_unload(model) for a merged one")
        self.names = [None, *adapters]
        configs, tensors = {}, {}
        for name, path in adapters.items():
            if not isinstance(name, str):
                raise TypeError(f"adapter names must be strings, got {name!r}")
            configs[name], tensors[name] = _read(path)
            config = configs[name]
            if config["variant"] not in ("lora", "rslora"):
                raise ValueError(f"adapter {name!r} ({path}) is a {variant_title(config['variant'])} adapter. Only "
                                 "additive updates W0 + s·B A can share one base matmul: DoRA rescales each column "
                                 "of the merged weight and PiSSA changes W0 itself. Serve it alone (load_adapter), "
                                 "or merged (merge_and_unload).")
            found = base_fingerprint(base, adapted=config["adapted_modules"])
            if found != config["base_fingerprint"]:
                raise ValueError(f"adapter {name!r} ({path}) was trained on a base with fingerprint "
                                 f"{config['base_fingerprint']}, but this base is {found}: on another base an "
                                 "adapter gives meaningless output. Serve it with the base it was trained on.")
        modules = sorted({m for c in configs.values() for m in c["adapted_modules"]})
        self.r_max = max((c["r"] for c in configs.values()), default=0)
        self.ranks = {name: c["r"] for name, c in configs.items()}
        self.scaling = torch.tensor([0.0] + [scaling_for(c["lora_alpha"], c["r"], c["variant"])
                                             for c in configs.values()])
        self.A, self.B = {}, {}
        for module in modules:
            linear = base.get_submodule(module)
            w = linear.weight
            A = torch.zeros(len(self.names), self.r_max, linear.in_features, dtype=w.dtype, device=w.device)
            B = torch.zeros(len(self.names), linear.out_features, self.r_max, dtype=w.dtype, device=w.device)
            for slot, name in enumerate(self.names[1:], start=1):
                if module in configs[name]["adapted_modules"]:
                    r = configs[name]["r"]
                    A[slot, :r] = tensors[name][f"{module}.lora_A"]
                    B[slot, :, :r] = tensors[name][f"{module}.lora_B"]
            self.A[module], self.B[module] = A, B
        self.scaling = self.scaling.to(dtype=base.pos_emb.weight.dtype, device=base.pos_emb.weight.device)

    def slots(self, names: list) -> torch.Tensor:
        """The slot of each request's adapter (None: the base, slot 0)."""
        return torch.tensor([self.names.index(n) for n in names], device=self.scaling.device)

    def nbytes_per_adapter(self) -> int:
        """Bytes one slot takes in the stack (at the padded rank r_max)."""
        return sum(t[0].numel() * t.element_size() for stack in (self.A, self.B) for t in stack.values())


def lora_rows(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, scaling: torch.Tensor,
              slots: torch.Tensor) -> torch.Tensor:
    """Each row's own LoRA term, gathered from a stack (Punica's BGMV, in PyTorch; notebook 12's exercise):
    x (batch, T, in); A (n_slots, r, in); B (n_slots, out, r); scaling (n_slots,); slots (batch,) the slot of each
    row. Returns (batch, T, out), row i being scaling[slots[i]] · x_i A_{slots[i]}^T B_{slots[i]}^T."""
    s = scaling[slots].view(-1, 1, 1)  # (batch, 1, 1)
    return s * (x @ A[slots].transpose(1, 2) @ B[slots].transpose(1, 2))  # (b, T, in)(b, in, r)(b, r, out)


class Gathered:
    """The factors of one batch's rows, gathered once from the stack and reused at every step:
    At[module] (B, in, r) with each row's scaling folded in, Bt[module] (B, r, out)."""

    def __init__(self, stack: AdapterStack, slots: torch.Tensor):
        s = stack.scaling[slots].view(-1, 1, 1)
        self.At = {m: (A[slots] * s).transpose(1, 2) for m, A in stack.A.items()}  # (B, in, r)
        self.Bt = {m: B[slots].transpose(1, 2) for m, B in stack.B.items()}  # (B, r, out)

    def rows(self, rows: torch.Tensor) -> Gathered:
        """The same factors for a subset of the rows."""
        sub = Gathered.__new__(Gathered)
        sub.At = {m: t[rows] for m, t in self.At.items()}
        sub.Bt = {m: t[rows] for m, t in self.Bt.items()}
        return sub

    def linear(self, module: nn.Linear, name: str, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, in) -> base(x) + each row's own s·x A^T B^T, (B, T, out): one base matmul for every row."""
        out = F.linear(x, module.weight, module.bias)  # the base matmul, once for every row
        if name not in self.At:
            return out
        return torch.baddbmm(out, torch.bmm(x, self.At[name]), self.Bt[name])  # out + (x A^T s) B^T, row by row


class BatchCache:
    """Keys and values of every request, one slot per row: K[layer] (B, n_head, block_size, head_size), and each
    row's own length (requests of different lengths share one tensor; a row's keys past its length are unused)."""

    def __init__(self, model: nn.Module, batch: int):
        cfg = model.config
        w = model.pos_emb.weight
        shape = (batch, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        self.k = [torch.zeros(shape, dtype=w.dtype, device=w.device) for _ in model.blocks]
        self.v = [torch.zeros(shape, dtype=w.dtype, device=w.device) for _ in model.blocks]
        self.lengths = torch.zeros(batch, dtype=torch.long, device=w.device)


def _forward_rows(model, gathered: Gathered, idx: torch.Tensor, pos: torch.Tensor, attend) -> torch.Tensor:
    """The GPT's forward with each row's adapter: idx, pos (B, T) -> logits (B, T, vocab). attend(layer, q, k, v)
    does the attention, with q, k, v (B, n_head, T, head_size), and returns (B, n_head, T, head_size)."""
    B, T = idx.shape
    C, nh = model.config.n_embd, model.config.n_head
    x = model.tok_emb(idx) + model.pos_emb(pos)  # (B, T, C)
    for i, block in enumerate(model.blocks):
        at, name = block.attn, f"blocks.{i}.attn"
        h = block.ln_1(x)
        q, k, v = (gathered.linear(getattr(at, p), f"{name}.{p}", h).view(B, T, nh, C // nh).transpose(1, 2)
                   for p in ("q_proj", "k_proj", "v_proj"))
        y = attend(i, q, k, v).transpose(1, 2).reshape(B, T, C)
        x = x + gathered.linear(at.o_proj, f"{name}.o_proj", y)
        h = block.ln_2(x)
        mlp, name = block.mlp, f"blocks.{i}.mlp"
        up = gathered.linear(mlp.up_proj, f"{name}.up_proj", h)
        x = x + gathered.linear(mlp.down_proj, f"{name}.down_proj", mlp.act(up))
    return model.lm_head(model.ln_f(x))


def _prefill(model, stack: AdapterStack, slot: torch.Tensor, cache: BatchCache, row: int,
             tokens: torch.Tensor) -> torch.Tensor:
    """Run one request's tokens (T,) with its adapter, store its keys and values in row `row` of the cache;
    returns the logits of its last token (vocab,)."""
    T = tokens.shape[0]

    def attend(layer, q, k, v):
        cache.k[layer][row, :, :T], cache.v[layer][row, :, :T] = k[0], v[0]
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    pos = torch.arange(T, device=tokens.device).unsqueeze(0)
    logits = _forward_rows(model, Gathered(stack, slot.view(1)), tokens.unsqueeze(0), pos, attend)
    cache.lengths[row] = T
    return logits[0, -1]


def _decode(model, gathered: Gathered, cache: BatchCache, rows: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """One new token per row in `rows` (each at its own position, after its own cached tokens): logits (n, vocab)."""
    lengths = cache.lengths[rows]
    span = int(lengths.max()) + 1
    visible = (torch.arange(span, device=last.device) <= lengths.view(-1, 1)).view(-1, 1, 1, span)  # own tokens
    every = len(rows) == len(cache.lengths)  # all rows: read the cache through a view, not a gathered copy

    def attend(layer, q, k, v):
        K, V = cache.k[layer], cache.v[layer]
        K[rows, :, lengths], V[rows, :, lengths] = k[:, :, 0], v[:, :, 0]  # each row appends at its own length
        if every:
            K, V = K[:, :, :span], V[:, :, :span]
        else:
            K, V = K[rows, :, :span], V[rows, :, :span]
        return F.scaled_dot_product_attention(q, K, V, attn_mask=visible)

    logits = _forward_rows(model, gathered, last.view(-1, 1), lengths.view(-1, 1), attend)
    cache.lengths[rows] = lengths + 1
    return logits[:, -1]


def _check_requests(requests, stack: AdapterStack, vocab: int, block_size: int) -> None:
    if not isinstance(requests, (list, tuple)) or not requests:
        raise ValueError("requests must be a non-empty list of (adapter_name or None, prompt_ids) pairs")
    for i, request in enumerate(requests):
        if not (isinstance(request, (list, tuple)) and len(request) == 2):
            raise ValueError(f"request {i} is {request!r:.80}; each request is a pair (adapter_name or None, "
                             "prompt_ids 1-D tensor)")
        name, prompt = request
        if name not in stack.names:
            known = ", ".join(repr(n) for n in stack.names[1:]) or "none"
            raise KeyError(f"request {i} asks for adapter {name!r}, which is not among the adapters given "
                           f"({known}); use None for the base alone")
        if not isinstance(prompt, torch.Tensor) or prompt.ndim != 1 or prompt.numel() == 0 \
                or prompt.dtype != torch.long:
            what = f"a {prompt.dtype} tensor of shape {tuple(prompt.shape)}" if isinstance(prompt, torch.Tensor) \
                else type(prompt).__name__
            raise ValueError(f"request {i}'s prompt is {what}; give a non-empty 1-D tensor of token ids "
                             "(torch.long), e.g. encode(text)")
        if int(prompt.min()) < 0 or int(prompt.max()) >= vocab:
            raise ValueError(f"request {i}'s prompt has token ids outside 0..{vocab - 1}")


@torch.no_grad()
def generate_many(base: nn.Module, adapters: dict[str, str], requests: list, max_new_tokens: int,
                  temperature: float = 1.0, top_k: int | None = None,
                  generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Decode requests for different adapters in one batch. base: a plain GPT; adapters: {name: adapter folder};
    requests: [(adapter name, or None for the base alone, prompt_ids (T_i,)), ...], of any lengths. Returns one
    1-D tensor per request, its prompt followed by max_new_tokens new tokens.

    Each request is prefilled alone (its prompt through the model with its adapter, its keys and values into its
    row of the cache); then every step is one forward for the whole batch: one new token per row, the base matmul
    once, each row's (A, B) gathered from the stack. With top_k=1 each request gets the tokens that decoding it
    alone would (GPT.generate on the base with its adapter loaded). Adapters of different ranks or targets are
    padded with zeros (AdapterStack). A server builds the stack once and passes it as `adapters` instead of the
    mapping: AdapterStack(base, {name: folder}) reads and checks every file. Past block_size tokens a row's window
    slides and its cache is rebuilt, as GPT.generate's is."""
    from .gpt import sample_next

    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    cfg = base.config
    was_training = base.training
    base.eval()
    stack = adapters if isinstance(adapters, AdapterStack) else AdapterStack(base, adapters)
    _check_requests(requests, stack, cfg.vocab_size, cfg.block_size)
    device = base.pos_emb.weight.device
    slots = stack.slots([name for name, _ in requests])
    tokens = [prompt.to(device) for _, prompt in requests]
    cache, gathered = BatchCache(base, len(requests)), Gathered(stack, slots)
    try:
        logits = torch.stack([_prefill(base, stack, slots[i], cache, i, t[-cfg.block_size:])
                              for i, t in enumerate(tokens)])  # (B, vocab)
        new = []
        for step in range(max_new_tokens):
            new.append(sample_next(logits, temperature, top_k, generator))  # (B, 1)
            if step == max_new_tokens - 1:
                break
            full = cache.lengths >= cfg.block_size  # these rows' windows slide: rebuild their caches
            logits = torch.empty_like(logits)
            rows = torch.nonzero(~full).flatten()
            if len(rows):
                logits[rows] = _decode(base, gathered if len(rows) == len(tokens) else gathered.rows(rows),
                                       cache, rows, new[-1][rows, 0])
            for i in torch.nonzero(full).flatten().tolist():
                context = torch.cat([tokens[i], *(n[i] for n in new)])[-cfg.block_size:]
                logits[i] = _prefill(base, stack, slots[i], cache, i, context)
    finally:
        base.train(was_training)
    if not max_new_tokens:
        return [t.clone() for t in tokens]
    new = torch.cat(new, dim=1)  # (B, max_new_tokens)
    return [torch.cat([t, new[i]]) for i, t in enumerate(tokens)]

"""Training memory in four parts: weights, gradients, optimizer state, activations (notebook 04).

    training_bytes_per_param("mixed", "adam") = 16   fp16 weight 2 + fp16 grad 2 + fp32 master, m, v 12
    training_bytes_per_param("fp32", "adam")  = 16   weight 4 + grad 4 + m 4 + v 4: same total, other parts
    memory_breakdown(GPTConfig.gpt2_small(), batch=1, seq=128)   -> Breakdown(weights=..., ...)

This is the *analytic* side: bytes from the shapes of GPTConfig, a batch and a sequence length, for
full fine-tuning, LoRA and QLoRA. lora_scratch.memory_measure measures the same four parts on a real
model; notebook 04 puts them side by side. The activation count is derived for *this* GPT in fp32
eager PyTorch on a CPU (F.scaled_dot_product_attention takes the CPU flash path, which keeps a
log-sum-exp per row instead of the T x T attention matrix) and is exact there; for 16-bit training
it multiplies the same tensor count by 2 bytes, an estimate.
"""
from __future__ import annotations

from dataclasses import astuple, dataclass

from .counting import lora_params
from .gpt import GPTConfig

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")
QKV = frozenset({"q_proj", "k_proj", "v_proj"})
NF4_DQ_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # QLoRA §3: 4-bit codes + 8-bit scales (block 64) + fp32 (block 256)
INT64 = 8  # token ids and targets stay int64 whatever the training precision


@dataclass(frozen=True)
class Precision:
    """Bytes per number for each part; `master` is the fp32 copy mixed precision keeps (ZeRO §3.1)."""
    weight: int
    grad: int
    state: int
    master: int
    act: int


PRECISIONS = {
    "fp32": Precision(weight=4, grad=4, state=4, master=0, act=4),
    "bf16": Precision(weight=2, grad=2, state=2, master=0, act=2),  # everything 16-bit, no master copy
    "mixed": Precision(weight=2, grad=2, state=4, master=4, act=2),  # 16-bit compute, fp32 optimizer
}
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "adam8bit": 2, "sgd_momentum": 1, "sgd": 0}  # m and v; momentum; none


@dataclass(frozen=True)
class Breakdown:
    """The four parts of training memory, in bytes."""
    weights: float
    gradients: float
    optimizer: float
    activations: float

    PARTS = ("weights", "gradients", "optimizer", "activations")

    @property
    def total(self) -> float:
        return sum(astuple(self))

    def on_gpu(self, offload_optimizer: bool = False) -> float:
        """Bytes on the accelerator; offloading (DeepSpeed/accelerate) moves optimizer state to CPU RAM."""
        return self.total - (self.optimizer if offload_optimizer else 0)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.PARTS, astuple(self)))


def _precision(name: str) -> Precision:
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {name!r}")
    return PRECISIONS[name]


def adam_state_bytes(n_params: int, bytes_per_value: float = 4) -> float:
    """Adam keeps two running averages per parameter, m and v (Kingma & Ba, 2015, Algorithm 1)."""
    return 2 * n_params * bytes_per_value


def optimizer_bytes_per_param(precision: str = "fp32", optimizer: str = "adam") -> float:
    """Optimizer state per *trainable* parameter: state values, plus the fp32 master copy in mixed precision.

    8-bit Adam (Dettmers et al., 2021) stores m and v in 1 byte each; its per-block scales are ignored here.
    """
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZER_STATES)}, got {optimizer!r}")
    p = _precision(precision)
    state = 1 if optimizer == "adam8bit" else p.state
    return p.master + OPTIMIZER_STATES[optimizer] * state


def training_bytes_per_param(precision: str = "fp32", optimizer: str = "adam") -> float:
    """Weight + gradient + optimizer state per trainable parameter: 16 for Adam in fp32 *and* mixed
    precision (ZeRO, Rajbhandari et al., 2019, §3.1: 2 + 2 + 12), 8 in pure bf16."""
    p = _precision(precision)
    return p.weight + p.grad + optimizer_bytes_per_param(precision, optimizer)


# ---------------------------------------------------------------------------------------------
# Parameters, straight from GPTConfig (lora_scratch.gpt.GPT's layout, lm_head tied)
# ---------------------------------------------------------------------------------------------

def linear_shape(cfg: GPTConfig, name: str) -> tuple[int, int]:
    """(d_in, d_out) of a block's Linear."""
    if name not in LINEARS:
        raise ValueError(f"{name!r} is not a Linear of a block; choose from {', '.join(LINEARS)}")
    C = cfg.n_embd
    return {"up_proj": (C, 4 * C), "down_proj": (4 * C, C)}.get(name, (C, C))


def param_groups(cfg: GPTConfig) -> dict[str, int]:
    """'linear': the block projection matrices (what QLoRA quantizes); 'other': embeddings, biases, LayerNorms."""
    C, L, bias = cfg.n_embd, cfg.n_layer, int(cfg.bias)
    matrices = L * sum(d_in * d_out for d_in, d_out in (linear_shape(cfg, n) for n in LINEARS))
    biases = L * bias * sum(linear_shape(cfg, n)[1] for n in LINEARS)
    norms = (2 * L + 1) * C * (1 + bias)  # ln_1, ln_2 per block, ln_f
    embeddings = (cfg.vocab_size + cfg.block_size) * C  # lm_head shares tok_emb: counted once
    return {"linear": matrices, "other": biases + norms + embeddings}


def n_params(cfg: GPTConfig) -> int:
    return sum(param_groups(cfg).values())


def lora_param_count(cfg: GPTConfig, targets: tuple[str, ...] = ("q_proj", "v_proj"), r: int = 8) -> int:
    """A (r, d_in) and B (d_out, r) for every targeted Linear of every block (Hu et al., 2021, §4.1)."""
    return cfg.n_layer * sum(lora_params(*linear_shape(cfg, t), r) for t in targets)


# ---------------------------------------------------------------------------------------------
# Activations: what autograd saves for the backward pass
# ---------------------------------------------------------------------------------------------

def _block_saved(cfg: GPTConfig, tok: int, adapted: set[str], r: int, rg_in: bool,
                 ln_trainable: bool) -> tuple[int, bool]:
    """Floats one block saves, and whether its output requires grad.

    Rules of PyTorch's autograd: a Linear keeps its input only if its weight (or its LoRA A) is
    trained; LayerNorm keeps input, mean and 1/std; GELU keeps its input; flash attention keeps
    q, k, v, its output and a log-sum-exp per row and head. A node exists only where grad flows.
    """
    C, nh = cfg.n_embd, cfg.n_head
    layer_norm = tok * C + 2 * tok
    n = tok * r * len(adapted) if r else 0  # LoRA's x A^T, (B, T, r) per adapter, kept for B's gradient
    ln_1 = rg_in or ln_trainable
    n += layer_norm if ln_1 else 0
    n += tok * C if adapted & QKV else 0  # ln_1's output, kept once for q, k and v (one storage)
    attn = ln_1 or bool(adapted & QKV)
    # the output comes back in (B, T, nh, hs) layout, so it *is* o_proj's input: no second copy
    n += 4 * tok * C + nh * tok if attn else (tok * C if "o_proj" in adapted else 0)
    rg_mid = rg_in or attn or "o_proj" in adapted
    ln_2 = rg_mid or ln_trainable
    n += layer_norm if ln_2 else 0
    n += tok * C if "up_proj" in adapted else 0  # ln_2's output
    gelu = ln_2 or "up_proj" in adapted
    n += 4 * tok * C if gelu else 0  # GELU's input (B, T, 4C)
    n += 4 * tok * C if "down_proj" in adapted else 0  # GELU's output = down_proj's input
    return n, rg_mid or gelu or "down_proj" in adapted


def block_activation_floats(cfg: GPTConfig, batch: int, seq: int, method: str = "full",
                            targets: tuple[str, ...] = ("q_proj", "v_proj"), r: int = 8,
                            attn_matrix: bool = False) -> list[int]:
    """Floats each block saves, first block first (under LoRA the first one saves less: nothing
    upstream of it trains). attn_matrix: the math attention path (no flash) keeps the (B, nh, T, T)
    softmax instead of the log-sum-exp; derived for full fine-tuning."""
    if cfg.dropout:
        raise ValueError(f"the activation count assumes dropout 0 (masks would add to it), got {cfg.dropout}")
    full = method == "full"
    adapted, rank = (set(LINEARS), 0) if full else (set(targets), r)
    tok, rg, out = batch * seq, full, []
    for _ in range(cfg.n_layer):
        n, rg = _block_saved(cfg, tok, adapted, rank, rg, ln_trainable=full)
        out.append(n + (cfg.n_head * tok * (seq - 1) if attn_matrix else 0))
    return out


def activation_bytes(cfg: GPTConfig, batch: int, seq: int, method: str = "full",
                     targets: tuple[str, ...] = ("q_proj", "v_proj"), r: int = 8, act_bytes: int = 4,
                     checkpointing: bool = False, attn_matrix: bool = False) -> int:
    """Bytes autograd holds at the end of the forward pass (eager PyTorch, dropout 0).

    checkpointing: each block keeps only its input (torch.utils.checkpoint); the backward then
    recomputes one block at a time, a peak that comes on top (memory_breakdown adds it).
    """
    full, tok, C = method == "full", batch * seq, cfg.n_embd
    blocks = block_activation_floats(cfg, batch, seq, method, targets, r, attn_matrix)
    floats = cfg.n_layer * tok * C if checkpointing else sum(blocks)  # checkpointing: block inputs only
    floats += tok * C + 2 * tok  # ln_f keeps its input, mean, 1/std (grad flows: adapters below)
    floats += tok * C if full else 0  # the tied lm_head keeps its input when it trains
    floats += tok * cfg.vocab_size + 1  # log_softmax keeps its output (B*T, vocab); cross-entropy a scalar
    ints = (2 * tok + seq if full else tok) * INT64  # targets; full FT: token and position ids too
    return floats * act_bytes + ints


def layer_activation_bytes(cfg: GPTConfig, batch: int, seq: int, act_bytes: int = 4) -> int:
    """One fully trained block: 16·B·T·C floats + (4 + n_head)·B·T (LayerNorm statistics, log-sum-exp)."""
    tok = batch * seq
    return act_bytes * (16 * tok * cfg.n_embd + (4 + cfg.n_head) * tok)


def korthikanti_layer_bytes(seq: int, batch: int, hidden: int, heads: int) -> float:
    """s·b·h·(34 + 5·a·s/h): one layer's activations in 16-bit with dropout, attention matrix stored
    (Korthikanti et al., 2022, §4.1, Eq. 1); excludes embeddings and logits."""
    return seq * batch * hidden * (34 + 5 * heads * seq / hidden)


# ---------------------------------------------------------------------------------------------
# The four parts together
# ---------------------------------------------------------------------------------------------

def memory_breakdown(cfg: GPTConfig, batch: int, seq: int, method: str = "full", precision: str = "fp32",
                     optimizer: str = "adamw", targets: tuple[str, ...] = ("q_proj", "v_proj"), r: int = 8,
                     checkpointing: bool = False, attn_matrix: bool = False) -> Breakdown:
    """Weights, gradients, optimizer state and activations for full fine-tuning, LoRA or QLoRA.

    LoRA: the base is frozen (no gradient, no optimizer state); only A and B train (Hu et al., 2021, §4.2).
    QLoRA: the block matrices are stored in NF4 with double quantization, 4.127 bits per parameter
    (Dettmers et al., 2023, §3); embeddings, LayerNorms and biases stay in the 16-bit/fp32 weight format.
    """
    if method not in ("full", "lora", "qlora"):
        raise ValueError(f"method must be 'full', 'lora' or 'qlora', got {method!r}")
    p, groups = _precision(precision), param_groups(cfg)
    if method == "full":
        trainable, weights = n_params(cfg), n_params(cfg) * p.weight
    else:
        trainable = lora_param_count(cfg, tuple(targets), r)
        linear = groups["linear"] * (NF4_DQ_BITS / 8 if method == "qlora" else p.weight)
        weights = linear + (groups["other"] + trainable) * p.weight
    acts = activation_bytes(cfg, batch, seq, "full" if method == "full" else "lora", tuple(targets), r,
                            p.act, checkpointing, attn_matrix)
    if checkpointing:  # the backward recomputes one block at a time: its activations come back briefly
        acts += p.act * max(block_activation_floats(cfg, batch, seq, method if method == "full" else "lora",
                                                    tuple(targets), r, attn_matrix))
    return Breakdown(weights, trainable * p.grad, trainable * optimizer_bytes_per_param(precision, optimizer), acts)


def lora_memory_saving(n_params: int, n_lora: int, activation_bytes: float) -> float:
    """Share of fp32-Adam training memory LoRA saves, activations held equal (a first-order view):
    full 16·P + act against 4·P (frozen weights) + 16·n_lora + act."""
    full = 16 * n_params + activation_bytes
    return 1 - (4 * n_params + 16 * n_lora + activation_bytes) / full

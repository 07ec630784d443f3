"""Checkers for 07_finetune_with_lora: choose_targets, inject_lora, lora_optimizer, optimizer_state_bytes,
forgetting, folio_gain."""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn as nn

from .answers import as_whole, first_wrong, none_hint, numbers_from, shown, whole_problem
from .core import FAIL, PASS, Verdict, call_safely, describe, report

_PARTS = {"attention": ["q_proj", "k_proj", "v_proj", "o_proj"], "mlp": ["up_proj", "down_proj"]}
_PARTS["all"] = _PARTS["attention"] + _PARTS["mlp"]


def _targets_verdict(fn: Callable) -> Verdict:
    for part, want in _PARTS.items():
        got, problem = call_safely(fn, part)
        if problem:
            return problem
        if not isinstance(got, (list, tuple)) or not all(isinstance(t, str) for t in got):
            shown_got = repr(got) if isinstance(got, (str, list, tuple)) else describe(got) + none_hint(got)
            return Verdict(FAIL, f"choose_targets({part!r}) should return a list of module names (str), "
                                 f"e.g. ['up_proj', 'down_proj'], got {shown_got}.")
        got = list(got)
        if any(t in ("lm_head", "tok_emb") for t in got):
            return Verdict(FAIL, "you included lm_head/tok_emb: the head is tied to the token embedding, so "
                                 "LoRA there would silently change the embedding too; adapt projections only.")
        if part == "attention" and sorted(got) == sorted(_PARTS["mlp"]):
            return Verdict(FAIL, "attention and mlp are swapped: q, k, v, o live in attention; up and down "
                                 "in the MLP.")
        if sorted(got) != sorted(want):
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            return Verdict(FAIL, f"choose_targets({part!r}) misses {missing} and has extra {extra}. "
                                 "Attention has q_proj, k_proj, v_proj and o_proj (the output projection is "
                                 "easy to forget); the MLP has up_proj and down_proj.")
    return Verdict(PASS, "correct: 'all' adapts the six projections of every block, never the tied head.")


def check_choose_targets(fn: Callable) -> Callable:
    from ..finetune import choose_targets

    return report("choose_targets", lambda: _targets_verdict(fn), fn, choose_targets,
                  "lora_scratch.finetune.choose_targets")


def _toy_model(dtype: torch.dtype = torch.float32) -> nn.Module:
    """Frozen 10x10 Linear (110 fp32 numbers) + trainable 10x2 Linear (22): Adam keeps 2 x 22 x 4 = 176 B."""
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)).to(dtype)
    for p in model[0].parameters():
        p.requires_grad_(False)
    return model


def _optimizer_bytes_fp64(fn: Callable) -> Verdict:
    """The same model in fp64: a built-in 4 bytes a number is right for fp32 only (Adam's m and v take the
    parameter's own format, p.element_size())."""
    value, problem = call_safely(fn, _toy_model(torch.float64))
    problem = problem or whole_problem(value, "optimizer_state_bytes(model)", "a number of bytes, an int")
    if problem:
        return problem
    if as_whole(value) == 352:
        return Verdict(PASS, "correct: 2 states × 4 bytes × trainable parameters only.")
    if as_whole(value) == 176:
        return Verdict(FAIL, "right for fp32, but you built in 4 bytes per number: an fp64 model's Adam state takes 8 "
                             "(and a bf16 one's 2). Ask each parameter: p.element_size().")
    return Verdict(FAIL, f"for the same model in float64 (8 bytes a number) the answer is 2 × 22 × 8 = 352 bytes; "
                         f"your function returned {as_whole(value)}.")


def _optimizer_bytes_verdict(fn: Callable) -> Verdict:
    value, problem = call_safely(fn, _toy_model())
    problem = problem or whole_problem(value, "optimizer_state_bytes(model)", "a number of bytes, an int")
    if problem:
        return problem
    value = as_whole(value)
    hints = {
        176: None,
        1056: "you counted the frozen parameters too (132 numbers): Adam keeps state only for parameters "
              "with requires_grad=True — that is LoRA's whole saving here.",
        88: "you counted one state tensor per parameter; Adam keeps two, the mean m and the square mean v.",
        44: "you counted numbers, not bytes: multiply by p.element_size() (4 for fp32).",
        528: "you counted frozen parameters and only one state tensor.",
        264: "three states per parameter? Adam keeps two (m and v); the weight itself is not optimizer state.",
    }
    for expected, hint in hints.items():
        if math.isclose(value, expected):
            return _optimizer_bytes_fp64(fn) if hint is None else Verdict(FAIL, hint)
    return Verdict(FAIL, f"a frozen 10x10 Linear plus a trainable 10x2 Linear (22 numbers, fp32) needs "
                         f"2 × 22 × 4 = 176 bytes of Adam state; your function returned {value:g}.")


def check_optimizer_state_bytes(fn: Callable) -> Callable:
    from ..finetune import optimizer_state_bytes

    return report("optimizer_state_bytes", lambda: _optimizer_bytes_verdict(fn), fn, optimizer_state_bytes,
                  "lora_scratch.finetune.optimizer_state_bytes")


_PAIRS = [(1.5, 1.6), (1.9, 1.5), (1.0, 1.0), (2.0, 1.2)]  # (before, after)


def _signed_verdict(fn: Callable, name: str, want: Callable, meaning: str) -> Verdict:
    got, problem = numbers_from(fn, _PAIRS, name, "a float")
    if problem:
        return problem
    close = lambda f: all(math.isclose(g, f(b, a), abs_tol=1e-9) for g, (b, a) in zip(got, _PAIRS))  # noqa: E731
    if close(want):
        return Verdict(PASS, f"correct: {meaning}")
    if close(lambda b, a: -want(b, a)):
        return Verdict(FAIL, f"the sign is flipped. {meaning[0].upper() + meaning[1:]}")
    if close(lambda b, a: abs(a - b)):
        return Verdict(FAIL, "you took the absolute value, which hides the direction: keep the sign, so that "
                             f"the opposite change comes out negative. {meaning}")
    if close(lambda b, a: a / b) or close(lambda b, a: b / a):
        return Verdict(FAIL, f"you returned a ratio; use the difference of the losses (nats). {meaning}")
    i = first_wrong(got, [want(b, a) for b, a in _PAIRS])
    (b, a), (g, w) = _PAIRS[i], shown(got[i], want(*_PAIRS[i]))
    return Verdict(FAIL, f"{name}(before={b:g}, after={a:g}) should be {w if w[0] == '-' else '+' + w}; yours "
                         f"returned {g}. {meaning}")


def check_forgetting(fn: Callable) -> Callable:
    from ..finetune import forgetting

    judge = functools.partial(_signed_verdict, fn, "forgetting", lambda b, a: a - b,
                              "forgetting = modern loss after − before, positive when the model got worse.")
    return report("forgetting", judge, fn, forgetting, "lora_scratch.finetune.forgetting")


def check_folio_gain(fn: Callable) -> Callable:
    from ..finetune import folio_gain

    judge = functools.partial(_signed_verdict, fn, "folio_gain", lambda b, a: b - a,
                              "gain = Folio loss before − after, positive when the model learned.")
    return report("folio_gain", judge, fn, folio_gain, "lora_scratch.finetune.folio_gain")


# ---- the injection and the LoRA-only optimizer: checked on a 2-block GPT small enough to build in ms ----

def _mini_gpt() -> nn.Module:
    from ..gpt import GPT, GPTConfig

    torch.manual_seed(0)  # a fixed model; report() puts the learner's RNG back afterwards
    return GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=2, n_head=2, n_embd=8)).eval()


def _returned_model_problem(value, model: nn.Module) -> Verdict | None:
    """The notebook writes `mine = inject_lora(load_base(), ...)`: the model must come back, where it was."""
    if value is None:
        return Verdict(FAIL, "your function returned None: end it with `return model`. The notebook writes "
                             "mine = inject_lora(...), and None has no layers.")
    if value is not model:
        return Verdict(FAIL, f"return the model you were given, changed in place; got {describe(value)}.")
    moved = sorted({f"{p.dtype} on {p.device}" for p in model.parameters()} - {"torch.float32 on cpu"})
    if moved:
        return Verdict(FAIL, f"your function converted or moved the model (parameters now {moved[0]}): only wrap "
                             "its layers; the cells below use it where and as it was.")
    return None


def _wrapping_problem(model: nn.Module, linears: dict[str, nn.Module]) -> Verdict | None:
    from ..lora import LoRALinear

    if any("." in child for m in model.modules() for child, _ in m.named_children()):
        return Verdict(FAIL, "setattr(model, 'blocks.0.attn.q_proj', ...) adds a NEW attribute whose name has dots; "
                             "the block still uses its old layer. Set it on the parent: "
                             "setattr(model.get_submodule('blocks.0.attn'), 'q_proj', ...) — name.rpartition('.') "
                             "splits the two.")
    wrapped = {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    want = sorted(n for n in linears if n.rsplit(".", 1)[-1] in ("q_proj", "v_proj"))
    if not wrapped:
        return Verdict(FAIL, "no layer of the model was replaced. Assigning to the loop variable changes nothing: "
                             "put the new layer on its parent with setattr(parent, child_name, LoRALinear(...)).")
    if any(n.endswith("lm_head") for n in wrapped):
        return Verdict(FAIL, "you wrapped lm_head, whose weight is tied to the token embedding: wrap only the "
                             "layers whose name ends with one of the targets.")
    if sorted(wrapped) != want:
        return Verdict(FAIL, f"for targets ['q_proj', 'v_proj'] the wrapped layers should be {want}; yours are "
                             f"{sorted(wrapped)}. Match the last part of the name: name.rsplit('.', 1)[-1].")
    layer = next(iter(wrapped.values()))
    if layer.r != 2 or abs(layer.scaling - 2.0) > 1e-12:
        return Verdict(FAIL, f"the layers have r = {layer.r} and scaling {layer.scaling:g}; for r = 2, alpha = 4 "
                             "the scaling is alpha / r = 2. LoRALinear's arguments are (base, r, alpha).")
    if any(wrapped[n].base is not linears[n] for n in want):
        return Verdict(FAIL, "each LoRALinear should wrap the model's own Linear (LoRALinear(module, r, alpha)), "
                             "not a copy or a new layer: the pretrained weights must stay the ones it learned.")
    return None


def _inject_verdict(fn: Callable) -> Verdict:
    model = _mini_gpt()
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    x = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(0))
    logits_before = model(x)[0]
    value, problem = call_safely(fn, model, ["q_proj", "v_proj"], 2, 4.0)
    problem = problem or _returned_model_problem(value, model) or _wrapping_problem(model, linears)
    if problem:
        return problem
    if not torch.equal(model(x)[0], logits_before):
        return Verdict(FAIL, "the model's output changed at injection; with B = 0 it must not. Did you "
                             "re-initialise the wrapped layer or B?")
    return Verdict(PASS, "correct: q_proj and v_proj of both blocks wrapped in place, outputs unchanged (B = 0).")


def check_inject_lora(fn: Callable) -> Callable:
    from ..lora import add_lora

    return report("inject_lora", lambda: _inject_verdict(fn), fn, add_lora, "lora_scratch.lora.add_lora")


def _optimizer_verdict(fn: Callable) -> Verdict:
    from ..lora import add_lora

    model = add_lora(_mini_gpt(), ["q_proj", "v_proj"], r=2, alpha=4.0)
    opt, problem = call_safely(fn, model, 1e-2)
    if problem:
        return problem
    if not isinstance(opt, torch.optim.Optimizer):
        return Verdict(FAIL, f"return the optimizer (e.g. torch.optim.AdamW(...)), got {describe(opt)}"
                             f"{none_hint(opt)}.")
    lora = {id(p) for n, p in model.named_parameters() if ".lora_" in n}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    given = [p for g in opt.param_groups for p in g["params"]]
    if trainable - lora:
        return Verdict(FAIL, f"{len(trainable - lora)} parameter tensors besides A and B still have "
                             "requires_grad=True: add_lora froze only the wrapped layers' weights — the embeddings, "
                             "LayerNorms and un-adapted layers train too unless you freeze every parameter whose "
                             "name does not contain 'lora_'.")
    if lora - trainable:
        return Verdict(FAIL, "some lora_A / lora_B have requires_grad=False: they are the only weights that "
                             "should learn.")
    if {id(p) for p in given} != lora:
        return Verdict(FAIL, f"the optimizer got {len(given)} tensors; give it exactly the {len(lora)} lora_A / "
                             "lora_B tensors (those with requires_grad=True), e.g. "
                             "[p for p in model.parameters() if p.requires_grad].")
    if any(abs(g["lr"] - 1e-2) > 1e-12 for g in opt.param_groups):
        return Verdict(FAIL, "use the learning rate you were given (lr=lr).")
    if not isinstance(opt, (torch.optim.Adam, torch.optim.AdamW)):
        return Verdict(FAIL, f"use torch.optim.AdamW, as the course's training loop does; got {type(opt).__name__}.")
    if any(g.get("weight_decay", 0) != 0 for g in opt.param_groups):
        return Verdict(FAIL, "pass weight_decay=0.0: AdamW decays every tensor it is given by default (0.01), which "
                             "moves A even while its gradient is zero and pulls the update towards 0.")
    return Verdict(PASS, "correct: only A and B train, and Adam keeps state for them alone.")


def check_lora_optimizer(fn: Callable) -> Callable:
    from ..finetune import lora_optimizer

    return report("lora_optimizer", lambda: _optimizer_verdict(fn), fn, lora_optimizer,
                  "lora_scratch.finetune.lora_optimizer")

"""Checkers of 07_finetune_with_lora."""
import copy

import torch
import torch.nn as nn
from checklib import generic_tests

from lora_scratch import checks
from lora_scratch.finetune import choose_targets, folio_gain, forgetting, lora_optimizer, optimizer_state_bytes
from lora_scratch.lora import LoRALinear, add_lora

_ATT, _MLP = ["q_proj", "k_proj", "v_proj", "o_proj"], ["up_proj", "down_proj"]


def _inject(model, targets, r, alpha, match=None, wrap=None, on_parent=True):
    """A learner's inject_lora, with knobs for the typical mistakes."""
    match = match or (lambda name: name.rsplit(".", 1)[-1] in targets)
    wrap = wrap or (lambda m: LoRALinear(m, r, alpha))
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and match(name):
            parent, _, child = name.rpartition(".")
            new = wrap(module)
            if on_parent:
                setattr(model.get_submodule(parent) if parent else model, child, new)
            else:
                module = new  # noqa: F841 - the mistake: rebinding the loop variable
    return model


def _freeze_then(params_of, decay=0.0, opt=torch.optim.AdamW):
    def fn(model, lr):
        for n, p in model.named_parameters():
            p.requires_grad_(".lora_" in n)
        return opt(params_of(model), lr=lr, weight_decay=decay)
    return fn


def _inject_on_root(model, targets, r, alpha):
    """The mistake: setattr on the model itself, under the dotted name."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets:
            setattr(model, name, LoRALinear(module, r, alpha))
    return model

def _inject_without_return(model, targets, r, alpha):
    """Wraps every target right, then forgets `return model`."""
    _inject(model, targets, r, alpha)


def _reinit(module):
    layer = LoRALinear(module, 2, 4.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    return layer


CASES = {
    checks.check_choose_targets: {
        "reference": choose_targets,
        "mistakes": [
            (lambda part: {"attention": _MLP, "mlp": _ATT, "all": _ATT + _MLP}[part], "swapped"),
            (lambda part: {"attention": _ATT[:3], "mlp": _MLP, "all": _ATT[:3] + _MLP}[part], "o_proj"),
            (lambda part: {"attention": _ATT, "mlp": _MLP, "all": _ATT + _MLP + ["lm_head"]}[part], "tied"),
            (lambda part: "q_proj,v_proj", "list of module names"),
            (lambda part: {}[part], "raised KeyError"),
        ],
    },
    checks.check_inject_lora: {
        "reference": add_lora,
        "mistakes": [
            (lambda m, t, r, a: _inject(m, t, r, a, on_parent=False), "setattr(parent"),
            (lambda m, t, r, a: _inject(m, t, r, a, match=lambda n: True), "tied"),
            (lambda m, t, r, a: _inject(m, t, r, a, match=lambda n: "proj" in n), "Match the last part"),
            (lambda m, t, r, a: _inject(m, t, r, a, wrap=lambda mod: LoRALinear(mod, int(a), r)), "(base, r, alpha)"),
            (lambda m, t, r, a: _inject(m, t, r, a, wrap=lambda mod: LoRALinear(copy.deepcopy(mod), r, a)),
             "not a copy"),
            (lambda m, t, r, a: _inject(m, t, r, a, wrap=_reinit), "output changed"),
            (lambda m, t, r, a: 1 / 0, "raised ZeroDivisionError"),
            (_inject_on_root, "name has dots"),
            (_inject_without_return, "end it with `return model`"),  # was a false ✅: `mine = inject_lora(...)` is None
            (lambda m, t, r, a: _inject(m, t, r, a).double(), "converted or moved the model"),
        ],
    },
    checks.check_lora_optimizer: {
        "reference": lora_optimizer,
        "mistakes": [
            (lambda m, lr: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=lr),
             "freeze every parameter"),
            (_freeze_then(lambda m: m.parameters()), "give it exactly"),
            (lambda m, lr: [p for n, p in m.named_parameters() if ".lora_" in n], "return the optimizer"),
            (lambda m, lr: (_freeze_then(lambda m: [p for p in m.parameters() if p.requires_grad])(m, 1e-3)),
             "learning rate you were given"),
            (_freeze_then(lambda m: [p for p in m.parameters() if p.requires_grad], decay=0.01), "weight_decay=0.0"),
            (_freeze_then(lambda m: [p for p in m.parameters() if p.requires_grad], opt=torch.optim.SGD), "AdamW"),
            (lambda m, lr: [p.requires_grad_(False) for p in m.parameters()] and torch.optim.AdamW(
                [torch.zeros(1, requires_grad=True)], lr=lr), "should learn"),
        ],
    },
    checks.check_optimizer_state_bytes: {
        "reference": optimizer_state_bytes,
        "mistakes": [
            (lambda m: sum(2 * p.numel() * p.element_size() for p in m.parameters()), "frozen parameters too"),
            (lambda m: sum(p.numel() * 4 for p in m.parameters() if p.requires_grad), "two, the mean m"),
            (lambda m: sum(2 * p.numel() for p in m.parameters() if p.requires_grad), "not bytes"),
            (lambda m: "176 B", "return one number"),
            (lambda m: sum(2 * p.numel() * 4 for p in m.parameters() if p.requires_grad),  # was a false ✅
             "you built in 4 bytes per number"),
        ],
    },
    checks.check_forgetting: {
        "reference": forgetting,
        "mistakes": [
            (lambda before, after: before - after, "sign is flipped"),
            (lambda before, after: abs(after - before), "absolute value"),
            (lambda before, after: after / before, "ratio"),
            (lambda before, after: after, "should be +0.1"),
        ],
    },
    checks.check_folio_gain: {
        "reference": folio_gain,
        "mistakes": [
            (lambda before, after: after - before, "sign is flipped"),
            (lambda before, after: abs(after - before), "absolute value"),
            (lambda before, after: None, "returned None (a function without a `return` line gives None)"),
        ],
    },
}

# the three tests every checker gets: reference ✅, stub ⏳, each typical mistake ❌ with its hint
test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)

"""Checkers of 07_finetune_with_lora."""
from checklib import generic_tests

from lora_scratch import checks
from lora_scratch.finetune import choose_targets, folio_gain, forgetting, optimizer_state_bytes

_ATT, _MLP = ["q_proj", "k_proj", "v_proj", "o_proj"], ["up_proj", "down_proj"]

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
    checks.check_optimizer_state_bytes: {
        "reference": optimizer_state_bytes,
        "mistakes": [
            (lambda m: sum(2 * p.numel() * p.element_size() for p in m.parameters()), "frozen parameters too"),
            (lambda m: sum(p.numel() * 4 for p in m.parameters() if p.requires_grad), "two, the mean m"),
            (lambda m: sum(2 * p.numel() for p in m.parameters() if p.requires_grad), "not bytes"),
            (lambda m: "176 B", "return a number"),
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
            (lambda before, after: None, "returned a NoneType"),
        ],
    },
}

# the three tests every checker gets: reference ✅, stub ⏳, each typical mistake ❌ with its hint
test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)

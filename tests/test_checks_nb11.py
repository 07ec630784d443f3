"""Checkers of 11_scaling_out."""
import torch
from checklib import generic_tests, run

from lora_scratch import checks
from lora_scratch.data_parallel import allreduce_bytes, average_gradients, ring_allreduce_bytes, zero_stage_bytes


def average_in_place(per_rank):
    for grads in per_rank[1:]:
        for i, g in enumerate(grads):
            per_rank[0][i] += g
    return [g / len(per_rank) for g in per_rank[0]]


def average_flat(per_rank):  # mean over the parameter axis: one tensor per rank
    return [torch.cat([g.reshape(-1) for g in grads]).mean() for grads in per_rank]


def zero_with(weights_from, grads_from, opt_from, weight_bytes=2):
    def fn(n, d, stage):
        return (weight_bytes * n / (d if stage >= weights_from else 1) + 2 * n / (d if stage >= grads_from else 1)
                + 12 * n / (d if stage >= opt_from else 1))
    return fn


def all_bytes(model):
    return 4 * sum(p.numel() for p in model.parameters())


CASES = {
    checks.check_average_gradients: {
        "reference": average_gradients,
        "mistakes": [
            (lambda pr: [sum(gs) for gs in zip(*pr)], "did not divide by the number of ranks"),
            (lambda pr: [sum(gs) / 2 for gs in zip(*pr)], "divided by the number of parameters"),
            (lambda pr: pr[0], "rank 0's gradients unchanged"),
            (average_in_place, "changed the input gradients in place"),
            (lambda pr: pr[0][1] * 1.0, "return a list"),
            (lambda pr: [sum(gs) / len(pr) for gs in zip(*pr)][:1], "return 2 averaged tensors"),
            (average_flat, "return 2 averaged tensors"),
            (lambda pr: [(sum(gs) / len(pr)).reshape(-1)[:5] for gs in zip(*pr)], "keeps its parameter's shape"),
            (lambda pr: [sum(gs) / len(pr) + 1 for gs in zip(*pr)], "the values are wrong"),
            (lambda pr: [sum(g) / len(pr) for g in pr], "added different parameters together"),
        ],
    },
    checks.check_allreduce_bytes: {
        "reference": allreduce_bytes,
        "mistakes": [
            (all_bytes, "counted the frozen parameters"),
            (lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad), "not bytes"),
            (lambda m: sum(p.numel() for p in m.parameters()), "numbers instead of bytes"),
            (lambda m: 32 * sum(p.numel() for p in m.parameters() if p.requires_grad), "counted bits"),
            (lambda m: 2 * sum(p.numel() for p in m.parameters() if p.requires_grad), "2 bytes per value"),
            (lambda m: 4 * sum(p.numel() for p in m.parameters() if p.requires_grad), "fixed 4"),
            (lambda m: 7, "88 bytes per step"),
            (lambda m: "88", "return one number"),
            (lambda m: sum(p.grad.numel() * 4 for p in m.parameters() if p.requires_grad), "p.grad is None"),
            (lambda m: sum(p.numel() * p.element_size() for p in m.parameters() if not p.requires_grad),
             "frozen parameters instead of the trainable"),
        ],
    },
    checks.check_ring_allreduce_bytes: {
        "reference": ring_allreduce_bytes,
        "mistakes": [
            (lambda n, w: (w - 1) / w * n, "one phase only"),
            (lambda n, w: 2 * n, "forgot the (N−1)/N"),
            (lambda n, w: (w - 1) * n, "whole buffer to every other"),
            (lambda n, w: 2 * (w - 1) * n, "each chunk is n_bytes / N"),
            (lambda n, w: n, "does not send exactly n_bytes"),
            (lambda n, w: 2 * (w - 1) / w * n + 1,
             "ring_allreduce_bytes(1000, 1) should be 0; your function returned 1."),
            (lambda n, w: [n], "return one number"),
            (lambda n, w: 2 * (w - 1) * n // w, "you rounded down (// or int())"),  # was a false ✅ (1968 for N = 64)
            (lambda n, w: n if w == 1 else 2 * (w - 1) / w * n,  # right for N = 4: the hint names the case that is not
             "ring_allreduce_bytes(1000, 1) should be 0; your function returned 1000."),
        ],
    },
    checks.check_zero_stage_bytes: {
        "reference": zero_stage_bytes,
        "mistakes": [
            (zero_with(3, 2, 1, weight_bytes=0), "forget the 2Ψ fp16 weights"),
            (zero_with(3, 1, 1), "stage 1 already shards the gradients"),
            (zero_with(1, 1, 1), "shard the weights too early"),
            (zero_with(3, 3, 2), "stage 1 divides only the optimizer state"),
            (zero_with(3, 3, 1), "stage 2 also divides the gradients"),
            (zero_with(4, 2, 1), "stage 3 divides everything"),
            (lambda n, d, s: zero_stage_bytes(n, d, s) / 1e9, "look like GB already"),
            (lambda n, d, s: zero_stage_bytes(n, 64, s), "not 7.5e9 and 64"),
        ],
    },
}

# the three tests every checker gets: reference ✅, stub ⏳, each typical mistake ❌ with its hint
test_reference_passes, test_stub_is_not_done_yet, test_typical_mistake_gets_its_hint = generic_tests(CASES)


def test_checker_output_is_deterministic(capsys):
    for checker, fn in [(checks.check_average_gradients, average_gradients),
                        (checks.check_zero_stage_bytes, zero_with(3, 1, 1))]:
        outputs = [run(capsys, checker, fn)[1] for _ in range(2)]
        assert outputs[0] == outputs[1]


def test_ring_hint_shows_two_different_numbers(capsys):
    """It once read "should be … 1500; got 1500": the message showed case N = 4 whatever case was wrong, rounded."""
    out = run(capsys, checks.check_ring_allreduce_bytes, lambda n, w: 2 * (w - 1) / w * n + 0.01 * (w == 8))[1]
    assert "ring_allreduce_bytes(800, 8) should be 1400; your function returned 1400.01." in out, out

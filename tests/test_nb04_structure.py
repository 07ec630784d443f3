"""Notebook 04's shape (issue 16): a core path that needs no attention internals, and no answer shown early."""
import json
import re
from pathlib import Path

MASTER = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "04_memory_breakdown.ipynb"
ATTENTION_INTERNALS = re.compile(r"softmax|korthikanti|sdpa|flash|T × T|T×T|\(B, nh, T, T\)|q @ k", re.IGNORECASE)


def cells():
    return [(c["cell_type"], "".join(c["source"])) for c in json.loads(MASTER.read_text())["cells"]]


def first_optional_section() -> int:
    return next(i for i, (kind, src) in enumerate(cells()) if kind == "markdown" and re.match(r"## .*🔵 optional", src))


def test_the_core_path_needs_no_attention_internals():
    """A learner arriving from 03 knows a block's matrices, not q·kᵀ or the T × T softmax (06 builds those)."""
    for i, (_, src) in enumerate(cells()[:first_optional_section()]):
        found = ATTENTION_INTERNALS.search(src)
        assert not found, f"core cell {i} uses attention internals ({found.group(0)!r}): move it to §9 (after 06)"


def test_the_attention_internals_section_says_it_comes_after_06():
    headings = [src.splitlines()[0] for kind, src in cells() if kind == "markdown" and src.startswith("## ")]
    inside = [h for h in headings if "attention" in h.lower()]
    assert inside and all("after notebook 06" in h.lower() and "🔵 optional" in h for h in inside), inside


def test_no_exercise_answer_is_computed_before_its_exercise():
    """The package's reference of an exercise (memory.<name>) is not called before the learner writes <name>."""
    code = [src for kind, src in cells() if kind == "code"]
    exercises = [(i, re.search(r"def (\w+)\(", src).group(1))
                 for i, src in enumerate(code) if "### BEGIN SOLUTION" in src]
    assert len(exercises) == 3
    for i, name in exercises:
        early = [j for j, src in enumerate(code[:i]) if re.search(rf"\bmem\.{name}\(|\b{name}\(", src)]
        assert not early, f"code cells {early} compute {name} before its exercise (code cell {i})"


def test_lora_is_measured_only_after_the_concept_check_asks_for_a_prediction():
    everything = cells()
    check = next(i for i, (kind, src) in enumerate(everything) if kind == "markdown" and "Concept check" in src)
    first_lora = next(i for i, (kind, src) in enumerate(everything) if kind == "code" and "add_lora(" in src)
    assert check < first_lora

"""Exercise checkers: ✅ correct, ❌ wrong (with a hint naming the likely mistake), ⏳ not done yet.

Each `check_<exercise>(fn)` calls the learner's function on known inputs, prints one verdict, and
returns the function the notebook should go on with: the learner's if it passed, otherwise the
package's reference (and says so), so an unfinished exercise never breaks the cells below it.
A checker never raises (unless strict mode, below, asks it to) and prints nothing that changes from run to run.
It gives the whole check at most core.TIME_LIMIT_S seconds, leaves torch's RNG and default dtype as they were,
and turns exit() into a ❌; only KeyboardInterrupt (the stop button) still stops the cell, as the learner asked
(core.py says how).

For grading, every verdict is also data: `checks.verdicts()` lists them, and with LORA_SCRATCH_VERDICTS=FILE each
one is appended to FILE as a JSON line (exercise, status: pass / fail / todo, message) — scripts/grade.py reads
them. With LORA_SCRATCH_CHECKS=strict a ❌ or ⏳ also raises CheckFailed after printing, for nbgrader and otter,
which score a test cell by whether it raises.

One module per notebook (nb00.py for 00_start_here, nb01.py, ...). Every `check_*` function of those
modules is made available here, so a notebook calls `checks.check_perplexity(perplexity)`.
"""
from importlib import import_module
from pkgutil import iter_modules

from .core import FAIL, PASS, TODO, CheckFailed, Verdict, passes, report, verdicts

__all__ = ["FAIL", "PASS", "TODO", "CheckFailed", "Verdict", "passes", "report", "verdicts"]

for _module in sorted(m.name for m in iter_modules(__path__) if m.name.startswith("nb")):
    for _name, _fn in vars(import_module(f".{_module}", __name__)).items():
        if _name.startswith("check_"):
            if _name in globals():  # two notebooks' checkers with one name: fail loudly, not silently
                raise ImportError(f"{_name} is defined twice in lora_scratch/checks ({_module} and an earlier "
                                  "module); give one of the exercises another name")
            globals()[_name] = _fn
            __all__.append(_name)

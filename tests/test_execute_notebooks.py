"""scripts/execute_notebooks.py: headless runs never sit out a missed wake-up (nbclient #312)."""
import asyncio
import importlib.util
import time
from pathlib import Path
from queue import Empty

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
execute_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute_notebooks)


class MissedWakeUp:
    """A channel whose first poll misses the message that is already there: it waits out its whole timeout
    (what nbclient's single long poll does in #312), while any later poll finds the message at once."""

    def __init__(self, message=None):
        self.message, self.polls = message, []

    async def get_msg(self, timeout=None):
        self.polls.append(timeout)
        if len(self.polls) == 1 or self.message is None:
            await asyncio.sleep(timeout if timeout is not None else 3600)
            raise Empty
        return self.message


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_missed_wake_up_costs_one_slice_not_the_timeout():
    channel = MissedWakeUp({"msg_type": "execute_reply"})
    get_msg = execute_notebooks.sliced(channel.get_msg, step=0.05)
    start = time.monotonic()
    assert run(get_msg(timeout=600)) == {"msg_type": "execute_reply"}
    assert time.monotonic() - start < 5  # unsliced, this poll would have waited 600 s
    assert len(channel.polls) == 2 and all(t <= 0.05 for t in channel.polls)


def test_without_a_timeout_it_still_waits_in_slices():
    channel = MissedWakeUp({"msg_type": "stream"})
    assert run(execute_notebooks.sliced(channel.get_msg, step=0.05)(timeout=None)) == {"msg_type": "stream"}
    assert channel.polls == [0.05, 0.05]


def test_no_message_raises_empty_once_the_timeout_has_passed():
    channel = MissedWakeUp(message=None)
    get_msg = execute_notebooks.sliced(channel.get_msg, step=0.05)
    start = time.monotonic()
    with pytest.raises(Empty):
        run(get_msg(timeout=0.3))
    assert 0.3 <= time.monotonic() - start < 3
    assert len(channel.polls) >= 6  # it kept polling until the deadline, in slices


def test_a_widget_notebook_runs_headless_in_normal_time(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from ipywidgets import IntSlider, interact\n"
        "def show(r=3):\n    print('rank', r)\n"
        "_ = interact(show, r=IntSlider(value=3, min=1, max=9))"),
        nbformat.v4.new_code_cell("print('after the slider')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "widget.ipynb"
    nbformat.write(nb, path)
    seconds = [execute_notebooks.execute(path, timeout=120) for _ in range(3)]
    ran = nbformat.read(path, as_version=4)
    assert ran.cells[1].outputs[0]["text"] == "after the slider\n"
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in ran.cells[0].outputs)
    assert max(seconds) < 60, seconds  # a stall would sit out the 120 s cell timeout

"""Execute the master notebooks top to bottom in a fresh kernel and store their outputs.

    python scripts/execute_notebooks.py               # every notebooks/solutions/NN_*.ipynb
    python scripts/execute_notebooks.py 00 03         # only those whose name starts with 00 or 03
    python scripts/execute_notebooks.py --repeat 20 --no-write 01   # run 01 twenty times, store nothing

Prints each notebook's wall time (this is also how the ⏱ run times in the notebooks are measured).
Then run `python scripts/build_notebooks.py` to regenerate the student versions.

Every headless run of a notebook (this script, `make bench`, a grader) goes through `execute()`, whose
client waits for the kernel's messages in short slices. nbclient waits for a cell's reply with one long
asyncio poll of the ZeroMQ socket; after a cell that opens widget comms (an `interact` slider) that poll can
miss the reply's wake-up and sit until the cell timeout (nbclient #312, nbconvert #2029). A fresh poll
checks the socket again, so a missed wake-up costs at most one slice instead of the whole timeout.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from queue import Empty

import nbformat
from nbclient import NotebookClient

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"
POLL_SLICE_S = 0.5  # the longest a missed wake-up can delay a message


def sliced(get_msg, step: float = POLL_SLICE_S):
    """Wrap an async channel's get_msg(timeout) so it polls in slices of `step` seconds until the timeout
    (None: forever). Same contract: returns a message, or raises queue.Empty once the timeout has passed."""
    async def sliced_get_msg(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = step if deadline is None else max(0.0, min(step, deadline - time.monotonic()))
            try:
                return await get_msg(timeout=left)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return sliced_get_msg


class SlicedPollClient(NotebookClient):
    """nbclient's NotebookClient whose shell and iopub channels poll in slices (see the module docstring)."""

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        for channel in (kc.shell_channel, kc.iopub_channel):
            channel.get_msg = sliced(channel.get_msg)
        return kc


def execute(path: Path, write: bool = True, timeout: int = 600) -> float:
    """Run the notebook at `path` in a fresh kernel (its folder as the working directory); store the
    outputs in place when `write`. Returns the wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    SlicedPollClient(nb, timeout=timeout, kernel_name="python3",
                     resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    if write:
        nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="only notebooks whose name starts with one of these")
    parser.add_argument("--repeat", type=int, default=1, help="run each notebook this many times in a row")
    parser.add_argument("--no-write", action="store_true", help="do not store the outputs")
    args = parser.parse_args(argv)
    paths = sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    if args.prefixes:
        paths = [p for p in paths if any(p.name.startswith(a) for a in args.prefixes)]
    total = 0.0
    for path in paths:
        runs = [execute(path, write=not args.no_write) for _ in range(args.repeat)]
        total += sum(runs)
        shown = " ".join(f"{s:.1f}" for s in runs)
        print(f"{path.name:45s} {shown} s" + (f"  (max {max(runs):.1f} s)" if len(runs) > 1 else ""), flush=True)
    print(f"{'total':45s} {total:6.1f} s")


if __name__ == "__main__":
    main()

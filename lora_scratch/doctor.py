"""Is this computer ready for the course? A check that needs no Jupyter.

    python -m lora_scratch.doctor          # or: make doctor

One line per check, ✅ / ⚠️ / ❌ with what to do, and exit status 1 if anything is ❌ (⚠️ is advice: the course
runs, perhaps slowly). It checks the Python and package versions (against the pins in constraints.txt when the
course folder has one), whether torch is a CPU or CUDA build, the CPU threads, the memory and free disk, every data
file the notebooks load, a two-process gloo all-reduce (notebook 11), ipywidgets (notebook 01's slider), and the
course's Jupyter kernel. An instructor runs it on every laptop before a workshop (docs/INSTRUCTOR.md).
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .data import data_dir

OK, WARN, FAIL = "ok", "warn", "fail"
MARKS = {OK: "✅", WARN: "⚠️ ", FAIL: "❌"}
PACKAGES = ("torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "safetensors")
LAB = ("jupyterlab", "ipykernel")
MIN_RAM_GB, MIN_DISK_GB = 8.0, 2.0  # the heaviest notebook peaks well under 2 GB; 8 GB leaves room for a browser
DATA_FILES = ("base.safetensors", "base.json", "text/manifest.json", "adapters/folio/adapter_config.json",
              "adapters/folio/adapter_model.safetensors", "adapters/sonnets/adapter_config.json",
              "adapters/milton/adapter_config.json", "full_ft/run.json", "memory/peak_rss.json")
KERNEL = "lora-scratch"


@dataclass
class Check:
    name: str
    status: str
    message: str


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def pins(course: Path) -> dict[str, str]:
    """name -> pinned version from the course's constraints.txt ('name==version' lines), if there is one."""
    path = course / "constraints.txt"
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                out[name.strip().lower()] = version.strip()
    return out


def check_python() -> Check:
    v = sys.version_info
    if v < (3, 10):
        return Check("python", FAIL, f"Python {platform.python_version()}: the course needs 3.10 or newer. Install a "
                                     "newer Python (python.org, or your package manager) and create .venv with it.")
    return Check("python", OK, f"Python {platform.python_version()} ({sys.executable})")


def check_packages(course: Path) -> list[Check]:
    pinned, out = pins(course), []
    for name in PACKAGES:
        have = _version(name)
        if have is None:
            out.append(Check(name, FAIL, f"{name} is not installed in this Python: run `make lab` (or pip install "
                                         "-e '.[lab]') in the course folder, with the course's .venv"))
            continue
        want = pinned.get(name)
        base = have.split("+")[0]
        if want and base != want.split("+")[0]:
            out.append(Check(name, WARN, f"{name} {have}, the course pins {want}: it should run, but some printed "
                                         "numbers may differ from the stored outputs"))
        else:
            out.append(Check(name, OK, f"{name} {have}"))
    return out


def check_torch() -> list[Check]:
    import torch

    major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    if (major, minor) < (2, 2):
        return [Check("torch build", FAIL, f"torch {torch.__version__}: the course needs 2.2 or newer")]
    cuda = torch.version.cuda
    build = f"CUDA {cuda} build" if cuda else "CPU build"
    note = (" — fine, it runs on the CPU; a CPU-only build is ~5 GB smaller (docs/INSTRUCTOR.md, install per OS)"
            if cuda and not torch.cuda.is_available() else "")
    threads = torch.get_num_threads()
    return [Check("torch build", OK, f"torch {torch.__version__}, {build}; GPU available: "
                                     f"{torch.cuda.is_available()}{note}"),
            Check("threads", OK if threads >= 2 else WARN,
                  f"{threads} CPU threads for torch ({os.cpu_count()} logical CPUs)" +
                  ("" if threads >= 2 else ": notebooks run, but slower than the times they print"))]


def ram_gb() -> float | None:
    try:
        if sys.platform.startswith("linux"):
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 ** 2
        if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1024 ** 3
    except (OSError, ValueError):
        return None
    return None


def check_memory_and_disk(course: Path) -> list[Check]:
    ram = ram_gb()
    free = shutil.disk_usage(course).free / 1024 ** 3
    return [
        Check("memory", WARN if ram is None or ram < MIN_RAM_GB else OK,
              "memory unknown on this system" if ram is None else
              f"{ram:.1f} GB of RAM" + ("" if ram >= MIN_RAM_GB else f": below {MIN_RAM_GB:g} GB, close other "
                                        "programs (a browser with many tabs) while a notebook trains")),
        Check("disk", OK if free >= MIN_DISK_GB else FAIL,
              f"{free:.1f} GB free where the course is" + ("" if free >= MIN_DISK_GB else
                                                         f": the course needs about {MIN_DISK_GB:g} GB to work in")),
    ]


def check_data() -> Check:
    missing = [f for f in DATA_FILES if not (data_dir() / f).is_file()]
    if missing:
        return Check("data", FAIL, f"missing in {data_dir()}: {', '.join(missing)} — the course folder is incomplete; "
                                   "download or clone it again (data/README.md says how each file is made)")
    try:
        from .train import load_base

        load_base()
    except Exception as e:  # noqa: BLE001 - any failure to read the base is this check's answer
        return Check("data", FAIL, f"data/base.safetensors does not load ({type(e).__name__}: {e}); download or "
                                   "clone the course again")
    return Check("data", OK, f"{len(DATA_FILES)} data files present in {data_dir()}; the base model loads")


def check_gloo() -> Check:
    """Two processes all-reduce one tensor over gloo (what notebook 11 does), with a time limit."""
    import subprocess

    code = ("import sys; from lora_scratch.doctor import _gloo_pair; sys.exit(0 if _gloo_pair() else 1)")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return Check("gloo", WARN, "a two-process all-reduce did not finish in 120 s: notebook 11 may hang here "
                                   "(a firewall blocking 127.0.0.1?)")
    if done.returncode == 0:
        return Check("gloo", OK, "two processes all-reduced a tensor over gloo on 127.0.0.1 (notebook 11 will run)")
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no message"]
    return Check("gloo", WARN, f"torch.distributed with gloo failed ({tail[0][:200]}): notebook 11's live run will "
                               "not work here; the rest of the course does not need it")


def _gloo_pair() -> bool:
    import torch.multiprocessing as mp

    from .data_parallel import free_port, prepare_local_gloo

    prepare_local_gloo()
    port = free_port()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_gloo_worker, args=(rank, port)) for rank in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    return all(p.exitcode == 0 for p in procs)


def _gloo_worker(rank: int, port: int) -> None:
    import torch
    import torch.distributed as dist

    from .data_parallel import tcp_init_method

    dist.init_process_group("gloo", init_method=tcp_init_method(port), rank=rank, world_size=2)
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    dist.destroy_process_group()
    if t.item() != 3.0:
        raise SystemExit(1)


def check_widgets() -> Check:
    try:
        import ipywidgets

        return Check("widgets", OK, f"ipywidgets {ipywidgets.__version__} (notebook 01's rank slider)")
    except ImportError:
        return Check("widgets", WARN, "ipywidgets missing: notebook 01's slider shows a static picture instead")


def check_jupyter() -> list[Check]:
    missing = [n for n in LAB if _version(n) is None]
    if missing:
        return [Check("jupyter", WARN, f"{', '.join(missing)} not installed here: fine for `python -m` scripts; "
                                       "for the notebooks run `make lab` (or pip install -e '.[lab]')")]
    out = [Check("jupyter", OK, f"jupyterlab {_version('jupyterlab')}, ipykernel {_version('ipykernel')}")]
    found = [p for p in kernel_dirs() if (p / KERNEL / "kernel.json").is_file()]
    if found:
        out.append(Check("kernel", OK, f"Jupyter kernel '{KERNEL}' installed ({found[0] / KERNEL})"))
    else:
        out.append(Check("kernel", WARN, f"no Jupyter kernel named '{KERNEL}': VS Code or a Jupyter outside .venv "
                                         "will not find lora_scratch. Run `make kernel` (python -m ipykernel install "
                                         f"--user --name {KERNEL} --display-name 'LoRA from Scratch (.venv)')"))
    return out


def kernel_dirs() -> list[Path]:
    """Where Jupyter looks for kernels (its data paths, each with kernels/), read without importing Jupyter."""
    home = Path.home()
    user = {"darwin": home / "Library" / "Jupyter",
            "win32": Path(os.environ.get("APPDATA", home)) / "jupyter"}.get(sys.platform,
                                                                          home / ".local" / "share" / "jupyter")
    paths = [Path(p) for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    paths += [Path(os.environ["JUPYTER_DATA_DIR"])] if os.environ.get("JUPYTER_DATA_DIR") else [user]
    paths += [Path(sys.prefix) / "share" / "jupyter", Path("/usr/local/share/jupyter"), Path("/usr/share/jupyter")]
    return [p / "kernels" for p in paths]


def run(course: Path | None = None, gloo: bool = True) -> list[Check]:
    course = course or data_dir().parent
    checks = [check_python(), *check_packages(course), *check_torch(), *check_memory_and_disk(course), check_data(),
              check_widgets(), *check_jupyter()]
    if gloo:
        checks.append(check_gloo())
    return checks


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-gloo", action="store_true", help="skip the two-process check (it takes a few seconds)")
    args = p.parse_args(argv)
    checks = run(gloo=not args.no_gloo)
    for c in checks:
        print(f"{MARKS[c.status]} {c.name:12s} {c.message}")
    failed = [c.name for c in checks if c.status == FAIL]
    print("\nready for the course" if not failed else f"\nnot ready: fix {', '.join(failed)} (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    importlib.import_module("lora_scratch")  # the package itself must import: that is the first check of all
    sys.exit(main())

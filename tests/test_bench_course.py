"""scripts/bench_course.py: the logic on tiny fake notebooks (no full benchmark run here)."""
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_course", ROOT / "scripts" / "bench_course.py")
bench_course = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_course)

HEADER = ("# 99 · Fake\n\n⏱ **Time:** teaching 12 min · exercises 8 min · running about 3 s (measured on the "
          "reference machine: 2 CPU cores, no GPU)")


def fake_notebook(folder: Path, name: str, code: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(HEADER), nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / name
    nbformat.write(nb, path)
    return path


def test_stated_time_reads_the_header(tmp_path):
    stated = bench_course.stated_time(fake_notebook(tmp_path, "99_fake.ipynb", "x = 1"))
    assert stated == {"teaching_min": 12, "exercises_min": 8, "running_stated": "about 3 s"}


def test_stated_time_of_every_real_notebook_is_found():
    for path in sorted(bench_course.SOLUTIONS.glob("[0-9][0-9]_*.ipynb")):
        stated = bench_course.stated_time(path)
        assert stated["teaching_min"] and stated["exercises_min"] and stated["running_stated"], path.name


def test_select_filters_by_prefix_and_names_what_is_missing(tmp_path):
    paths = [tmp_path / "00_a.ipynb", tmp_path / "01_b.ipynb", tmp_path / "05_c.ipynb"]
    assert bench_course.select(paths, None) == paths
    assert bench_course.select(paths, ["01", "05"]) == paths[1:]
    with pytest.raises(SystemExit, match="--only 07"):
        bench_course.select(paths, ["07"])


def test_the_copy_runs_and_the_original_is_untouched(tmp_path):
    path = fake_notebook(tmp_path, "99_fake.ipynb", "print(6 * 7)")
    before = path.read_bytes()
    seen = []

    def execute(copy_path: Path) -> float:  # stands in for execute_notebooks.execute: records what it got
        seen.append(copy_path)
        copy_path.write_text("overwritten")
        return 1.25

    rows = bench_course.time_notebooks([path], execute=execute)
    assert path.read_bytes() == before and seen[0] != path and seen[0].name == path.name
    assert not seen[0].exists()  # the temporary folder is gone
    assert rows == [{"notebook": "99_fake.ipynb", "teaching_min": 12, "exercises_min": 8,
                     "running_stated": "about 3 s", "seconds": 1.2, "ok": True}]


def test_a_failing_notebook_is_recorded_and_the_others_still_run(tmp_path):
    paths = [fake_notebook(tmp_path, f"9{i}_fake.ipynb", "x = 1") for i in range(2)]

    def execute(copy_path: Path) -> float:
        if copy_path.name.startswith("90"):
            raise RuntimeError("Traceback ...\nZeroDivisionError: division by zero")
        return 2.0

    rows = bench_course.time_notebooks(paths, execute=execute)
    assert [r["ok"] for r in rows] == [False, True]
    assert rows[0]["error"] == "RuntimeError: ZeroDivisionError: division by zero"
    assert "**failed**" in "\n".join(bench_course._notebook_table(rows))


def test_real_kernel_on_a_one_cell_notebook(tmp_path):
    path = fake_notebook(tmp_path, "99_fake.ipynb", "print(6 * 7)")
    before = path.read_bytes()
    rows = bench_course.time_notebooks([path])
    assert rows[0]["ok"] and rows[0]["seconds"] > 0
    assert path.read_bytes() == before  # the stored notebook keeps no outputs from the benchmark


def test_partial_runs_write_nothing_unless_asked(tmp_path):
    paths = bench_course.output_paths
    assert paths(bench_course.parse_args([]))[:2] == (bench_course.OUT_JSON, bench_course.OUT_MD)
    assert paths(bench_course.parse_args(["--only", "01,05"]))[:2] == (None, None)
    assert paths(bench_course.parse_args(["--skip", "speed"]))[:2] == (None, None)
    out = tmp_path / "b.json"
    assert paths(bench_course.parse_args(["--only", "01", "--out", str(out)]))[:2] == (out, tmp_path / "b.md")
    with pytest.raises(SystemExit):
        bench_course.parse_args(["--skip", "everything"])


def test_report_states_the_machine_and_every_figure():
    rows = [{"notebook": "00_a.ipynb", "teaching_min": 15, "exercises_min": 10, "running_stated": "25 s",
             "seconds": 30.0, "ok": True},
            {"notebook": "04_b.ipynb", "teaching_min": 35, "exercises_min": 15, "running_stated": "65 s",
             "seconds": 95.5, "ok": True}]
    speed = {"setting": {"n_layer": 12, "batch": 1, "seq": 128, "r": 4, "targets": ["q_proj", "v_proj"],
                         "rounds": 5, "threads": 1}, "full_step_ms": 900.0, "base_forward_ms": 40.0,
             "lora_over_full_step": 0.412, "merged_over_base_latency": 1.004, "unmerged_over_base_latency": 1.031}
    measured = {"hooks": {"weights": 8e6, "gradients": 10e6, "optimizer": 20e6, "activations": 70e6},
                "step_peak_over_before": 120e6}
    memory = [bench_course.compare_memory("tiny full", measured, {"activations": 70e6, "step": 100e6})]
    result = {"machine": {"cpu": "Fake CPU 3000", "cores": 2, "gpu": None, "platform": "Linux", "python": "3.11",
                          "torch": "2.9", "torch_threads": 2, "date_utc": "2026-01-01 00:00 UTC"},
              "load_before": [0.1, 0.2, 0.3], "load_after": [0.4, 0.5, 0.6], "wall_seconds": 300.0,
              "notebooks": rows, "speed": speed, "memory": memory}
    text = bench_course.render_markdown(result)
    for expected in ("Fake CPU 3000, 2 cores", "torch 2.9", "2026-01-01", "[0.1, 0.2, 0.3]", "[0.4, 0.5, 0.6]",
                     "| **total** | 50 | 25 | | **125.5** (2.1 min) |", "Over 90 s: 04_b.ipynb", "| 0.41 |",
                     "| 1.00 |", "| 1.03 |", "| tiny full | 100.0 | 100.0 | 1.0000 | 120.0 | 1.20 |"):
        assert expected in text, expected
    assert memory[0]["hooks_over_predicted"] == 1.0 and memory[0]["rss_over_predicted"] == 1.2
    json.dumps(result)  # everything in the record is JSON


def test_machine_info_names_cpu_cores_and_torch():
    info = bench_course.machine_info()
    assert info["cpu"] and info["cores"] >= 1 and info["torch"] and info["torch_threads"] >= 1
    assert info["date_utc"].endswith("UTC")

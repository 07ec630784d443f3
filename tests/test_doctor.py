"""lora_scratch.doctor: the environment check that runs without Jupyter (issue 13), and the Windows-safe gloo
rendezvous that notebook 11 and the check share."""
import subprocess
import sys

import pytest

from lora_scratch import data_parallel, doctor


def by_name(checks):
    return {c.name: c for c in checks}


def test_this_environment_is_ready(tmp_path):
    checks = by_name(doctor.run(gloo=False))
    for name in ("python", "torch", "numpy", "safetensors", "torch build", "data", "disk"):
        assert checks[name].status == doctor.OK, checks[name]


def test_missing_data_fails_and_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_SCRATCH_DATA", str(tmp_path))
    check = doctor.check_data()
    assert check.status == doctor.FAIL and "base.safetensors" in check.message and "data/README.md" in check.message


def test_a_version_other_than_the_pin_is_a_warning_not_a_failure(tmp_path):
    (tmp_path / "constraints.txt").write_text("# pins\nnumpy==0.0.1\ntorch==2.14.1\n")
    checks = by_name(doctor.check_packages(tmp_path))
    assert checks["numpy"].status == doctor.WARN and "0.0.1" in checks["numpy"].message
    assert checks["tqdm"].status == doctor.OK  # not pinned there


def test_the_command_exits_nonzero_only_on_a_failure(monkeypatch, tmp_path, capsys):
    assert doctor.main(["--no-gloo"]) == 0
    assert "ready for the course" in capsys.readouterr().out
    monkeypatch.setenv("LORA_SCRATCH_DATA", str(tmp_path))
    assert doctor.main(["--no-gloo"]) == 1
    assert "not ready: fix data" in capsys.readouterr().out


def test_two_processes_all_reduce_over_gloo():
    assert doctor.check_gloo().status == doctor.OK


def test_on_windows_the_rendezvous_turns_libuv_off(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    assert data_parallel.tcp_init_method(29500).endswith("?use_libuv=0")
    monkeypatch.setattr(sys, "platform", "linux")
    assert data_parallel.tcp_init_method(29500) == "tcp://127.0.0.1:29500"


@pytest.mark.skipif(sys.platform == "win32", reason="the point is to check the Windows address on another system")
def test_the_windows_address_is_one_this_torch_accepts():
    """The ?use_libuv=0 form must be a valid rendezvous address, not only a string: one process joins with it."""
    code = ("import torch.distributed as dist; from lora_scratch.data_parallel import free_port; "
            "dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}?use_libuv=0', rank=0, "
            "world_size=1); dist.destroy_process_group(); print('joined')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "joined" in done.stdout, done.stderr

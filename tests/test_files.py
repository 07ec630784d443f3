"""lora_scratch.files: safetensors files are validated from their header alone, and whatever is not a valid
safetensors file (a pickle, a zip, garbage, a truncated file, a FIFO, a device) is refused with a ValueError."""
import os
import pickle
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as safetensors_save

from lora_scratch.files import load_tensors, read_metadata

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.uint8,
          torch.bool]


def header_length(blob: bytes) -> int:
    return int.from_bytes(blob[:8], "little")


def repad(blob: bytes, spaces: int) -> bytes:
    """The same file with `spaces` more blanks after the header JSON (the format allows them): safetensors
    itself pads headers to multiples of 8, this reaches every other length too."""
    n = header_length(blob)
    return (n + spaces).to_bytes(8, "little") + blob[8:8 + n] + b" " * spaces + blob[8 + n:]


def padded_file(target_residue: int) -> bytes:
    """A valid safetensors file whose 8-byte header length is `target_residue` mod 256."""
    blob = safetensors_save({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)})
    return repad(blob, (target_residue - header_length(blob)) % 256)


def test_a_valid_file_is_never_mistaken_for_a_pickle_whatever_its_header_length(tmp_path):
    """The old check sniffed the first byte: a header length of 128 mod 256 starts with 0x80, a pickle's opcode."""
    path = tmp_path / "w.safetensors"
    for residue in range(256):
        blob = padded_file(residue)
        assert header_length(blob) % 256 == residue
        path.write_bytes(blob)
        assert torch.equal(load_tensors(path)["w"], torch.arange(6, dtype=torch.float32).reshape(2, 3)), residue


def test_a_valid_file_starting_with_pk_loads(tmp_path):
    """b'PK' is a zip's magic; as a header length it is 0x4B50 = 19280 bytes of JSON."""
    for pad in range(19280 - 200, 19280 + 10):
        blob = safetensors_save({"w": torch.ones(2)}, metadata={"pad": "y" * pad})
        if blob[:2] == b"PK":
            break
    else:
        raise AssertionError("no padding gave a header starting with PK")
    (tmp_path / "pk.safetensors").write_bytes(blob)
    assert torch.equal(load_tensors(tmp_path / "pk.safetensors")["w"], torch.ones(2))


tensor_dicts = st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 4), max_size=3), st.integers(0, 2**31 - 1)),
    min_size=1, max_size=5)
metadata = st.dictionaries(st.text(max_size=8).filter(lambda k: k != "__metadata__"), st.text(max_size=300),
                           max_size=4)


def make_tensor(dtype: torch.dtype, shape: list[int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * 100).to(dtype)


@PROPERTY
@given(spec=tensor_dicts, meta=metadata, spaces=st.integers(0, 255))
def test_random_valid_files_always_load(tmp_path, spec, meta, spaces):
    """Random tensors and metadata, and header lengths of every residue mod 256 (through `spaces`)."""
    tensors = {name: make_tensor(*args) for name, args in spec.items()}
    blob = repad(safetensors_save(tensors, metadata=meta or None), spaces)
    path = tmp_path / "random.safetensors"
    path.write_bytes(blob)
    loaded = load_tensors(path)
    assert loaded.keys() == tensors.keys()
    assert all(torch.equal(loaded[k], tensors[k]) and loaded[k].dtype == tensors[k].dtype for k in tensors)
    assert read_metadata(path) == meta


@PROPERTY
@given(junk=st.binary(max_size=3000))
def test_random_bytes_are_refused_with_a_value_error(tmp_path, junk):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(junk)
    with pytest.raises(ValueError, match="refused"):
        load_tensors(path)


@PROPERTY
@given(spec=tensor_dicts, data=st.data())
def test_truncated_files_are_refused(tmp_path, spec, data):
    blob = safetensors_save({name: make_tensor(*args) for name, args in spec.items()})
    cut = data.draw(st.integers(0, len(blob) - 1))
    path = tmp_path / "cut.safetensors"
    path.write_bytes(blob[:cut])
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_tensors(path)


@PROPERTY
@given(spec=tensor_dicts, data=st.data())
def test_a_damaged_byte_gives_a_value_error_or_a_load_never_another_exception(tmp_path, spec, data):
    blob = bytearray(safetensors_save({name: make_tensor(*args) for name, args in spec.items()}))
    where = data.draw(st.integers(0, min(len(blob) - 1, header_length(blob) + 8)))  # the length or the JSON
    blob[where] = data.draw(st.integers(0, 255))
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(bytes(blob))
    try:
        load_tensors(path)
    except ValueError:
        pass  # refused: fine. Any other exception fails the test.


json_like = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                         lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                     max_size=4), max_leaves=12)


@PROPERTY
@given(obj=json_like, protocol=st.integers(2, pickle.HIGHEST_PROTOCOL))
def test_pickles_are_refused_as_pickles(tmp_path, obj, protocol):
    path = tmp_path / "p.safetensors"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    with pytest.raises(ValueError, match="is a Python pickle.*nothing in it was executed"):
        load_tensors(path)


@PROPERTY
@given(spec=tensor_dicts)
def test_torch_save_zips_are_refused_as_zips(tmp_path, spec):
    path = tmp_path / "z.safetensors"
    torch.save({name: make_tensor(*args) for name, args in spec.items()}, path)
    with pytest.raises(ValueError, match="zip archive.*nothing in it was executed"):
        load_tensors(path)


def test_only_the_header_is_read_to_validate(tmp_path):
    """A 64 MB file whose header is fine but whose data no tensor claims: refused after reading the header
    only (reading the whole file to look at its first bytes allocated all of it)."""
    import tracemalloc

    path = tmp_path / "big.safetensors"
    path.write_bytes(safetensors_save({"tiny": torch.zeros(1)}, metadata={"k": "v"}))
    with open(path, "r+b") as f:
        f.truncate(64 * 2**20)  # sparse: costs no disk
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="bytes that no tensor claims"):
            load_tensors(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"{peak / 2**20:.0f} MB allocated to validate a header"


def test_a_device_and_a_folder_are_refused_before_reading(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        load_tensors("/dev/zero")  # read_bytes() here used to exhaust memory
    with pytest.raises(ValueError, match="not a regular file"):
        load_tensors(tmp_path)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    """In a subprocess: a load blocked inside the safetensors library holds the GIL, so no thread could time it out."""
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    code = f"from lora_scratch.files import load_tensors\ntry:\n    load_tensors({str(fifo)!r})\n" \
           "except ValueError as e:\n    print(e)"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("loading a FIFO blocked")
    assert "not a regular file" in done.stdout, done.stdout + done.stderr


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tensors(tmp_path / "nope.safetensors")


def test_tensors_come_back_in_name_order_in_every_process(tmp_path):
    """safetensors' own load returns them in an order that changes from process to process (its map is
    randomised); a notebook that prints them in a loop needs one order, so load_tensors sorts by name."""
    from safetensors.torch import save_file

    names = [f"layer.{c}" for c in "qwertyuiopasdfgh"]
    save_file({n: torch.zeros(1) for n in names}, str(tmp_path / "t.safetensors"))
    path = str(tmp_path / "t.safetensors")
    code = f"from lora_scratch.files import load_tensors; print(list(load_tensors({path!r})))"
    orders = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout for _ in range(4)}
    assert orders == {f"{sorted(names)}\n"}

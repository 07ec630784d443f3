"""Safe files: safetensors only (never pickle), written atomically, checked before loading.

A safetensors file is an 8-byte little-endian header length n, n bytes of JSON (each tensor's dtype, shape and
byte range, plus string metadata), then the raw tensor bytes. That layout is validated from the header alone
before any tensor is read, so a pickle, a zip or a damaged file is refused with a message and nothing in it runs.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as tensors_from_bytes
from safetensors.torch import save as tensors_to_bytes

MAX_HEADER = 100_000_000  # the safetensors library refuses longer headers too
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E4M3FNUZ": 1, "F8_E5M2": 1, "F8_E5M2FNUZ": 1,
               "U16": 2, "I16": 2, "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "F32": 4,
               "U64": 8, "I64": 8, "F64": 8, "C64": 8}


def _umask_mode() -> int:
    """The permissions a normal open() would give (mkstemp's are owner-only)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename it over `path`:
    a crash at any moment leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes reach the disk before the rename makes them visible
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_text(obj: dict, what: str, indent: int | None = 1) -> str:
    """`obj` as JSON text, or a ValueError naming what JSON cannot hold (call it before touching any file)."""
    try:
        return json.dumps(obj, indent=indent, sort_keys=True, separators=None if indent else (",", ":")) + "\n"
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must hold only JSON values (str, int, float, bool, None, lists, and dicts with "
                         f"str keys): {e}. Convert it (e.g. float(x), x.tolist(), str(path)); nothing was written.") \
            from None


def atomic_write_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, json_text(obj, f"the JSON for {path}").encode())


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save a flat dict of tensors as safetensors, atomically."""
    atomic_write_bytes(Path(path), safetensors_bytes(tensors, metadata))


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    return tensors_to_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)


def check_finite(tensors: dict[str, torch.Tensor], what: str, advice: str) -> None:
    """Refuse NaN and infinity: a file full of them loads without a word and then produces garbage."""
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors.values():
        if t.is_floating_point() or t.is_complex():
            groups.setdefault(t.dtype, []).append(t.detach().reshape(-1))
    if all(bool(torch.isfinite(torch.cat(group)).all()) for group in groups.values()):
        return  # one pass per dtype: per-tensor checks cost more in thread start-ups than in arithmetic
    for name, t in tensors.items():
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise ValueError(f"{name} holds {bad} NaN or infinite value(s) out of {t.numel()}: {what}. {advice}")


# ---- reading: the header is validated before any tensor is touched ----

class _Invalid(Exception):
    """Why a file is not a valid safetensors file (turned into a ValueError that names the file)."""


def _refusal(path: Path, head: bytes, reason: str) -> ValueError:
    kind = ("a zip archive (torch.save's format, which holds a pickle)" if head[:4] == b"PK\x03\x04" else
            "a Python pickle" if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") else None)
    if kind:
        return ValueError(f"{path} is {kind}, not a safetensors file. It was refused and nothing in it was "
                          "executed. Save weights with safetensors (lora_scratch.save_adapter, save_checkpoint).")
    return ValueError(f"{path} is not a valid safetensors file: {reason}. It was refused and nothing in it was "
                      "executed or loaded; write it again (save_adapter / save_checkpoint) or restore a copy.")


def _open_regular(path: Path) -> tuple[int, int]:
    """(fd, size) of a regular file. Anything else is refused before a byte is read: a FIFO would block
    forever and /dev/zero never ends."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not stat.S_ISREG(path.stat().st_mode):
        raise ValueError(f"{path} is not a regular file (a folder, FIFO or device?); a safetensors file was "
                         "expected and nothing was read")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # never blocks, even if swapped for a FIFO
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError(f"{path} is not a regular file; nothing was read")
    return fd, info.st_size


def _check_layout(header: object, data_bytes: int) -> None:
    """Every tensor's dtype, shape and byte range must be sound, and the ranges must tile the data exactly."""
    if not isinstance(header, dict):
        raise _Invalid("its header is JSON but not an object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise _Invalid("its __metadata__ is not a map from strings to strings")
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") not in DTYPE_BYTES:
            raise _Invalid(f"tensor {name!r} has no known dtype")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        ints = lambda xs: isinstance(xs, list) and all(type(x) is int and x >= 0 for x in xs)  # noqa: E731
        if not ints(shape) or not ints(offsets) or len(offsets) != 2 or not offsets[0] <= offsets[1] <= data_bytes:
            raise _Invalid(f"tensor {name!r} has a bad shape, or bytes outside the file's {data_bytes} data bytes")
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[info["dtype"]]:
            raise _Invalid(f"tensor {name!r}'s byte range does not match its shape {shape} and dtype")
        spans.append(tuple(offsets))
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise _Invalid("its tensors' byte ranges overlap or leave gaps")
        end = stop
    if end != data_bytes:
        raise _Invalid(f"its data section has {data_bytes - end} bytes that no tensor claims")


def _validated_header(f, size: int, path: Path) -> dict:
    head = f.read(8)
    try:
        if len(head) < 8:
            raise _Invalid(f"it has {size} bytes, fewer than the 8 of the header length")
        n = int.from_bytes(head, "little")
        if n < 2 or n > min(size - 8, MAX_HEADER):
            raise _Invalid(f"its header length {n} does not fit in its {size} bytes")
        raw = f.read(n)
        if raw[:1] != b"{":
            raise _Invalid("its header does not start with '{'")
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise _Invalid(f"its header is not JSON ({type(e).__name__})") from None
        _check_layout(header, size - 8 - n)
    except _Invalid as e:
        raise _refusal(path, head, str(e)) from None
    return header


def read_header(path: Path) -> dict:
    """The validated JSON header of a safetensors file, read without reading any tensor."""
    fd, size = _open_regular(Path(path))
    with os.fdopen(fd, "rb") as f:
        return _validated_header(f, size, Path(path))


def read_safetensors(path: Path, sha256: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, str], str | None]:
    """(tensors, string metadata, the sha256 of the file's bytes if asked for): the header is validated first,
    and the tensors and the digest come from the same bytes."""
    path = Path(path)
    fd, size = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        header = _validated_header(f, size, path)
        f.seek(0)
        blob = f.read(size + 1)
    if len(blob) != size:
        raise ValueError(f"{path} changed while it was being read; nothing was loaded")
    try:
        loaded = tensors_from_bytes(blob)
    except (SafetensorError, KeyError, TypeError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path} is not a valid safetensors file ({e}); nothing was loaded") from None
    tensors = dict(sorted(loaded.items()))  # by name: safetensors returns them in an order that changes per process
    return tensors, dict(header.get("__metadata__", {})), hashlib.sha256(blob).hexdigest() if sha256 else None


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file. Anything else (a pickle, torch.save's zip, a damaged file) is refused:
    nothing in it is executed."""
    return read_safetensors(path)[0]


def read_metadata(path: Path) -> dict[str, str]:
    """The string metadata stored in a safetensors header (no tensor is read)."""
    return dict(read_header(path).get("__metadata__", {}))


# ---- an adapter folder: two files, saved all-or-nothing ----

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PENDING = ADAPTER_CONFIG + ".pending"  # the journal: exists only while a save is under way (or was cut short)
CONFIG_KEY = "lora_scratch.adapter_config"  # the weights file's metadata entry that holds the whole config


def write_adapter_folder(folder: Path, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """Save an adapter folder all-or-nothing, whenever a crash strikes.

    The weights file carries the whole config in its header, so alone it is a complete adapter, and its atomic
    rename is the commit point. Before it, the journal (the new config plus the new weights' sha256) is written;
    after it, the journal is renamed to adapter_config.json. A crash before the commit leaves the old pair; after
    it, read_adapter_folder finds weights whose sha256 the journal vouches for and finishes the rename. (Swapping
    whole folders would also have to carry along any other file the user keeps there.)"""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file; an adapter is saved as a folder, so give a folder path")
    text = json_text(config, "the adapter config (with its info)", indent=None)  # refuses before any write
    blob = safetensors_bytes(tensors, {CONFIG_KEY: text})
    record = json_text({**config, "weights_sha256": hashlib.sha256(blob).hexdigest()}, "the adapter config")
    atomic_write_bytes(folder / PENDING, record.encode())  # 1. the journal: what the new weights will be
    atomic_write_bytes(folder / ADAPTER_WEIGHTS, blob)  # 2. the commit point
    os.replace(folder / PENDING, folder / ADAPTER_CONFIG)  # 3. the journal becomes the readable config


def _small_json(path: Path) -> dict | None:
    """The JSON object in `path`: None if there is no such file, {} if it holds no readable JSON object."""
    if not path.exists():
        return None
    try:
        fd, size = _open_regular(path)
        with os.fdopen(fd, "rb") as f:
            return _small_json_text(f.read(min(size, MAX_HEADER)).decode("utf-8"))
    except (ValueError, OSError):
        return {}


def _small_json_text(text: str) -> dict:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return obj if isinstance(obj, dict) else {}


def read_adapter_folder(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, tensors) of an adapter folder whose two files verifiably belong together.

    Format /1 folders (whose weights carry no config) give their JSON config as it is. A save cut short after
    its commit point is finished here; files from two different saves are refused, naming both sha256s."""
    folder = Path(folder)
    weights, cfg = folder / ADAPTER_WEIGHTS, folder / ADAPTER_CONFIG
    if not weights.exists():
        raise FileNotFoundError(f"{folder} holds no adapter: an adapter folder holds {ADAPTER_WEIGHTS} and "
                                f"{ADAPTER_CONFIG}, as written by save_adapter()")
    tensors, meta, sha = read_safetensors(weights, sha256=True)
    recorded = _small_json(cfg)
    if CONFIG_KEY not in meta:  # format /1
        if recorded is None:
            raise FileNotFoundError(f"{cfg} is missing: an adapter folder holds {ADAPTER_WEIGHTS} and "
                                    f"{ADAPTER_CONFIG}, as written by save_adapter()")
        return recorded, tensors
    inside = _small_json_text(meta[CONFIG_KEY])
    if not inside:
        raise ValueError(f"{weights} holds no readable config in its header; nothing was loaded. Save it again.")
    if recorded is not None and recorded.get("weights_sha256") == sha:
        differ = sorted(k for k in set(recorded) | set(inside)
                        if k not in ("weights_sha256", "info") and recorded.get(k) != inside.get(k))
        if differ:
            raise ValueError(f"{cfg} was edited after saving: {', '.join(differ)} differ from the config stored "
                             f"inside {weights}. Nothing was loaded: undo the edit, or delete {ADAPTER_CONFIG} "
                             "to use the weights' own config.")
        return inside, tensors
    if (_small_json(folder / PENDING) or {}).get("weights_sha256") == sha:
        try:
            os.replace(folder / PENDING, cfg)  # finish the interrupted save
        except OSError:
            pass  # a read-only folder: the weights' own config is complete anyway
        return inside, tensors
    if recorded is None:
        return inside, tensors  # no config file at all: the weights file alone is a complete adapter
    raise _mismatch(folder, recorded.get("weights_sha256"), sha)


def _mismatch(folder: Path, recorded_sha: str | None, sha: str) -> ValueError:
    said = f"records weights with sha256 {recorded_sha}" if recorded_sha else "records no sha256 (old or damaged)"
    return ValueError(f"{folder} holds files from different saves: {ADAPTER_CONFIG} {said}, but {ADAPTER_WEIGHTS} "
                      f"has sha256 {sha}. They do not belong together, so nothing was loaded. If {ADAPTER_WEIGHTS} "
                      f"is the adapter you want, delete {ADAPTER_CONFIG} (the weights file carries its own config); "
                      "otherwise save the adapter again with save_adapter().")

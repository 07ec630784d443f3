"""Our NF4 (lora_scratch.quant) against bitsandbytes' on the same weights (notebook 13 §6).

    pip install bitsandbytes                  # not in any extra: about 125 MB, with GPU libraries
    python scripts/compare_bnb_nf4.py         # writes data/bench/bnb_nf4.json

For every 2-D weight of the shipped base (and a random 512 x 512 matrix): bitsandbytes' quantize_4bit(nf4, blocksize
64, no double quantization) against our quantize_nf4(block=64, double_quant=False) — the packed 4-bit codes and the
absmax scales compared for equality, and the two tables of 16 levels by their largest difference. (bitsandbytes'
own CPU dequantize_4bit is not compared: without its Hub kernel it falls back to a path whose values were off by up
to 0.33 on these weights with 0.50.2, against 0.06 for decoding its own codes with its table.) HF_HUB_OFFLINE=1 is set
before the import: bitsandbytes may otherwise look for a kernel on the Hugging Face Hub.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lora_scratch.files import atomic_write_json  # noqa: E402
from lora_scratch.quant import NF4_LEVELS, quantize_nf4  # noqa: E402
from lora_scratch.train import load_base  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "data" / "bench" / "bnb_nf4.json")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import bitsandbytes
        import bitsandbytes.functional as bnbf
    except ImportError:
        raise SystemExit("bitsandbytes is not installed: pip install bitsandbytes (about 125 MB), then rerun") from None
    weights = {n: p.detach() for n, p in load_base().named_parameters() if p.dim() == 2 and p.numel() % 64 == 0}
    n_base = len(weights)
    weights["random 512 x 512"] = torch.randn(512, 512, generator=torch.Generator().manual_seed(0))
    same_codes = same_absmax = 0
    for w in weights.values():
        packed, state = bnbf.quantize_4bit(w.contiguous(), blocksize=64, quant_type="nf4", compress_statistics=False)
        ours = quantize_nf4(w, block=64, double_quant=False)
        same_codes += torch.equal(packed.reshape(-1), ours.packed)
        same_absmax += torch.equal(state.absmax.float(), ours.scales)
    levels = state.code.float().sort().values
    record = {"command": "python scripts/compare_bnb_nf4.py", "bitsandbytes": bitsandbytes.__version__,
              "torch": torch.__version__, "weights": len(weights), "base_weights": n_base,
              "same_codes": same_codes, "same_absmax": same_absmax,
              "levels_max_diff": (levels - NF4_LEVELS).abs().max().item()}
    print(record)
    atomic_write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()

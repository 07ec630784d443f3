"""LoRA from Scratch: the package behind the course. One module per idea; read any of them top to bottom."""
from . import variants  # noqa: F401  (registers rsLoRA, DoRA and PiSSA, so load_adapter can rebuild them)
from .gpt import GPT, GPTConfig
from .lora import (
    LoRALinear,
    add_lora,
    load_adapter,
    lora_disabled,
    lora_state_dict,
    mark_only_lora_as_trainable,
    merge_lora,
    save_adapter,
    unmerge_lora,
)

__all__ = [
    "GPT",
    "GPTConfig",
    "LoRALinear",
    "add_lora",
    "load_adapter",
    "lora_disabled",
    "lora_state_dict",
    "mark_only_lora_as_trainable",
    "merge_lora",
    "save_adapter",
    "unmerge_lora",
]

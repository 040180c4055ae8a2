"""Fine-tuning a Qwen-VL planner on puzzle datasets (DESIGN.md, "Training").

Components, one job each, and one recipe that uses them (torchtune's split):

* :mod:`~monet_cli.train.config` — the settings as dataclasses; YAML presets
  (``models/train/*.yaml``) merged with ``--set key=value``; printed complete.
* :mod:`~monet_cli.train.data` — ShareGPT-style JSONL records (multi-image, multi-turn),
  their hashes, the held-out split, and their encoding into token ids and labels (loss on
  the assistant turns only).
* :mod:`~monet_cli.train.recipe` — the training loop: peft DoRA / LoRA (QLoRA on a 4-bit
  base) or every weight (``full``), gradient accumulation and checkpointing, checkpoints,
  exact resume, eval loss, an optional time budget.
* :mod:`~monet_cli.train.merge` — adapter + base → merged full weights (for vLLM); a full run
  already is a model folder.
* :mod:`~monet_cli.train.card` — the run's model card (README.md).

Importing this package, ``config`` or ``data`` does not import torch; the recipe, the encoder
and merging import torch, transformers and peft inside their functions.
"""

from monet_cli.train.config import RunDirError, TrainConfig, TrainInterrupted, adapter_dir

__all__ = ["RunDirError", "TrainConfig", "TrainInterrupted", "adapter_dir"]

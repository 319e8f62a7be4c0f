"""``ragstore finetune``: domain fine-tuning that measures itself against the base model and plugs back in.

``config`` (what to run), ``data`` (pairs, validation, held-out split by group), ``run`` (mining, training,
before/after scoring, model card, the guard), ``plug`` (point a ragstore config at the new folder and
rebuild the store beside the old one).
"""

from __future__ import annotations

from .config import FinetuneConfig, load_finetune_config
from .data import TrainingData, load_training_data
from .plug import SwitchReport, update_config
from .run import FinetuneResult, finetune

__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "SwitchReport",
    "TrainingData",
    "finetune",
    "load_finetune_config",
    "load_training_data",
    "update_config",
]

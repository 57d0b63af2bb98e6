"""Training: the recipe and its presets, the training table, the frozen-part cache and the phase loop.

``from meterlib import train`` then ``train.config(...)`` and ``train.train(...)``; the linear
probe (``meterlib.train.probe``) and 02's figures (``meterlib.train.figures``, needs matplotlib)
are imported by name.
"""

from meterlib.model.transforms import Augment
from meterlib.train.cache import augmented_activations, frozen_activations, uses_bfloat16
from meterlib.train.loop import RunOptions, TrainResult, accuracy, train
from meterlib.train.phases import set_finetune_mode
from meterlib.train.recipe import PRECISIONS, PRESETS, TrainConfig, class_weights, config
from meterlib.train.table import decode_splits, training_table

__all__ = ["Augment", "PRECISIONS", "PRESETS", "RunOptions", "TrainConfig", "TrainResult", "accuracy",
           "augmented_activations", "class_weights", "config", "decode_splits", "frozen_activations",
           "set_finetune_mode", "train", "training_table", "uses_bfloat16"]

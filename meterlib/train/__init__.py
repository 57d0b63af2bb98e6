"""Training: the recipe and its presets, the training table, the frozen-part cache and the phase loop.

``from meterlib import train`` then ``train.config(...)``, ``train.train(...)`` (``folds=5`` adds
out-of-fold predictions of the training photos, for calibration: ``meterlib.train.crossfit``) and
``train.save_trained(...)`` (02's model file: ``meterlib.train.saving``); the linear
probe (``meterlib.train.probe``) and 02's figures (``meterlib.train.figures``, needs matplotlib)
are imported by name.
"""

from meterlib.model.transforms import Augment
from meterlib.train.cache import augmented_activations, frozen_activations, uses_bfloat16
from meterlib.train.crossfit import OutOfFold, assign_folds, cross_fit, out_of_fold
from meterlib.train.phases import set_finetune_mode
from meterlib.train.prepare import Prepared, RunOptions, prepare
from meterlib.train.recipe import PRECISIONS, PRESETS, TrainConfig, class_weights, config
from meterlib.train.saving import save_trained
from meterlib.train.table import decode_splits, training_table
from meterlib.train.training import WARM_STEPS, TrainResult, accuracy, train

__all__ = ["Augment", "OutOfFold", "PRECISIONS", "PRESETS", "Prepared", "RunOptions", "TrainConfig",
           "TrainResult", "WARM_STEPS", "accuracy", "assign_folds", "augmented_activations", "class_weights", "config", "cross_fit",
           "decode_splits", "frozen_activations", "out_of_fold", "prepare", "save_trained", "set_finetune_mode",
           "train", "training_table", "uses_bfloat16"]

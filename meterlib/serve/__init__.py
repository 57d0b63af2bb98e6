"""Serving: photos in, calibrated answers out (``from meterlib.serve import Predictor``)."""

from meterlib.serve.predictor import UNKNOWN, Prediction, Predictor

__all__ = ["UNKNOWN", "Prediction", "Predictor"]

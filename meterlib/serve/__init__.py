"""Serving: photos in, calibrated answers out (``from meterlib.serve import Predictor``)."""

from meterlib.serve.predictor import UNKNOWN, Outcome, Prediction, Predictor

__all__ = ["UNKNOWN", "Outcome", "Prediction", "Predictor"]

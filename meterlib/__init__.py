"""meterlib: identify electricity meter make/model from a photo, with calibrated confidence."""

__version__ = "0.1.0"

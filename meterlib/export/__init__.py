"""Exporting a checkpoint as an ONNX model (float32 or INT8), checked before it is written."""

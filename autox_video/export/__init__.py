"""Export a trained checkpoint out of the platform: ONNX + model.json + a Triton model repository."""

from __future__ import annotations

from autox_video.export.run import ExportResult, export_checkpoint

__all__ = ["ExportResult", "export_checkpoint"]

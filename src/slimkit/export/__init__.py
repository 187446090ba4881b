"""Exporters: ONNX and Hugging Face directories (each verified against PyTorch), and
safetensors with an architecture manifest."""

from slimkit.export.hf import export_hf
from slimkit.export.onnx import export_onnx, verify_onnx
from slimkit.models.persist import save_model

__all__ = ["export_hf", "export_onnx", "save_model", "verify_onnx"]

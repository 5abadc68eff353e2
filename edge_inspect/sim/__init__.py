"""Procedural parts with defects: the demo camera, training data and evaluation data."""

from .parts import DEFECT_KINDS, Camera, GroundTruthObject, Part, PartSpec, render_part

__all__ = ["Camera", "DEFECT_KINDS", "GroundTruthObject", "Part", "PartSpec", "render_part"]

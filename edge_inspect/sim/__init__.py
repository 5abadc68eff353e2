"""Procedural parts with defects: the demo camera, training data and evaluation data."""

from .parts import DEFECT_KINDS, GroundTruthObject, Part, PartSpec, render_part

__all__ = ["DEFECT_KINDS", "GroundTruthObject", "Part", "PartSpec", "render_part"]

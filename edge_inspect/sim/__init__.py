"""Procedural parts with defects: the demo camera, training data and evaluation data."""

from .parts import ALL_DEFECT_KINDS, DEFECT_KINDS, NEW_KINDS, Camera, GroundTruthObject, Part, PartSpec, render_part

__all__ = [
    "ALL_DEFECT_KINDS",
    "Camera",
    "DEFECT_KINDS",
    "GroundTruthObject",
    "NEW_KINDS",
    "Part",
    "PartSpec",
    "render_part",
]

"""The model runtime: Molmo2 bundles on ONNX Runtime. Knows nothing of stations or PLCs."""

from .bundle import BundleError
from .model import Answers, Generation, Pointing, VisionLanguageModel, YesNo, load_bundle
from .points import Point, PointAnswer, parse_points

__all__ = [
    "Answers",
    "BundleError",
    "Generation",
    "Point",
    "PointAnswer",
    "Pointing",
    "VisionLanguageModel",
    "YesNo",
    "load_bundle",
    "parse_points",
]

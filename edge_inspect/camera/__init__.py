"""Cameras: frame sources, the live grabber thread, calibration and image files."""

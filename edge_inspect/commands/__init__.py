"""Offline commands: try, tune, bench and the demo."""

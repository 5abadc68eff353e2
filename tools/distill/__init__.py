"""Distillation: teacher labels → student training → evaluation (imports torch; the 'export' extra)."""

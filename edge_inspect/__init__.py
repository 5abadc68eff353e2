"""edge-inspect: line-side vision inspection with a distilled Molmo vision-language model."""

__version__ = "0.2.0"

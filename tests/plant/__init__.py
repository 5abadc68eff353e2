"""The plant side: collector, plant web."""

"""Attacks on the real servers: the station web, the plant web, the collector."""

"""The station core and what it keeps in memory."""

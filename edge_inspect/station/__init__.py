"""The station core (trigger, frame, inspection, log, signals), its PLC side, alarms, events, the config keeper and systemd notification."""

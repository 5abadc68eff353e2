"""The plant's central side: the collector (MQTT to PostgreSQL), stored images and the plant web."""

"""Plant and fleet (docs/fleet.md): the station publishes its inspections, alarms and status to an MQTT
broker from a durable outbox in its log; a collector writes them into PostgreSQL; a web page reviews
all stations. Station side: link, publisher, outbox, messages, mqtt. Central side: collector,
pg_schema, images, serve."""

"""The model store on the station: versions, aliases, the model commands, what a station on an alias runs and logs."""

"""The one error type of checkpoint reading."""


class CheckpointError(Exception):
    """The checkpoint folder lacks something or holds a setting we cannot reproduce; the message
    starts with the file it is about."""

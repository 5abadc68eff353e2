"""The one family of user mistakes: a config that does not validate, a start-up the machine refuses
(a port in use, a device missing), a bundle that does not load, input that is not what the command
takes. ``edge-inspect`` prints each in one line and exits 2; any other exception is a bug and ends
with its traceback and exit 1."""


class UserError(Exception):
    """A mistake in what the user gave (file, key, argument): the message names it, in one line."""

"""The one exception type for user errors: the CLI prints its message on one line and exits 2."""


class LewmError(Exception):
    """A problem with the user's input (a file, a value, a missing extra), not a bug."""

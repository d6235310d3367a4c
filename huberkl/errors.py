"""One exception type for bad input, so the CLI can turn it into a one-line message."""


class InputError(ValueError):
    """Bad user input: the message names the value and what is allowed (CLI exit code 2)."""

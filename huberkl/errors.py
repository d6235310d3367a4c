"""One exception type for bad input, so the CLI can turn it into a one-line message.

It is the only exception ``huberkl.cli.main`` turns into exit code 2: any other exception,
a plain ``ValueError`` included, is a bug and keeps its traceback. A subclass of
``ValueError``, so library callers that catch ``ValueError`` are unaffected.
"""


class InputError(ValueError):
    """Bad user input: the message names the value and what is allowed (CLI exit code 2)."""

"""One exception type for bad input, so the CLI can turn it into a one-line message.

It is the only exception ``huberkl.cli.main`` turns into exit code 2: any other exception,
a plain ``ValueError`` included, is a bug and keeps its traceback. A subclass of
``ValueError``, so library callers that catch ``ValueError`` are unaffected. The two
type tests beside it are shared by every check of user input (schemas, model config).
"""

import numbers
from typing import Any


class InputError(ValueError):
    """Bad user input: the message names the value and what is allowed (CLI exit code 2)."""


def is_integer(value: Any) -> bool:
    """An integer, not a bool (``True`` is an ``int`` to Python, never a count to a user)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number, not a bool and not NaN (NaN passes no range check and fails none)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value

"""The one exception type that bad input raises.

Every check on user input (files, arrays, scribbles, checkpoints, arguments) raises
:class:`BadInputError` with a sentence that names the problem and the offending value,
so that a notebook shows a readable message rather than a numpy traceback.  It derives
from ``ValueError`` so generic ``except ValueError`` code keeps working.
"""


class BadInputError(ValueError):
    """Input that simwidgets cannot use; the message says what is wrong and where."""

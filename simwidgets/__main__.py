"""``python -m simwidgets``: see :mod:`simwidgets.cli`."""
import sys

from .cli import main

sys.exit(main())

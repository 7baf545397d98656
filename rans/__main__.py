"""``python -m rans``: the command line of :mod:`rans.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

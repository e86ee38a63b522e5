"""``python -m utils prepare | inspect | stats``: see :mod:`utils.cli`."""

import sys

from utils.cli import main

if __name__ == "__main__":
    sys.exit(main())

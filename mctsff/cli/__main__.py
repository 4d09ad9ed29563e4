"""``python -m mctsff.cli``: the ``mctsff`` command."""

import sys

from mctsff.cli import main

if __name__ == "__main__":  # (imported, e.g. by the docstring tests, it runs nothing)
    sys.exit(main())

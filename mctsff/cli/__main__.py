"""``python -m mctsff.cli``: the ``mctsff`` command."""

import sys

from mctsff.cli import main

sys.exit(main())

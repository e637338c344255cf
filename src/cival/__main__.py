"""``python -m cival`` is the ``cival`` command."""

import sys

from cival.cli import main

sys.exit(main())

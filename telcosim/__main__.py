"""``python -m telcosim``: the same as the ``telcosim`` command."""

import sys

from telcosim.cli import main

sys.exit(main())

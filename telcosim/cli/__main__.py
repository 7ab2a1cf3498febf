"""``python -m telcosim.cli``: the same as the ``telcosim`` command."""

import sys

from telcosim.cli import main

sys.exit(main())

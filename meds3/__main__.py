"""``python -m meds3`` runs the ``meds3`` command."""

import sys

from meds3.cli import main

sys.exit(main())

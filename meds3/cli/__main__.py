"""``python -m meds3.cli``: the ``meds3`` command, for launchers that take a module
(``accelerate launch -m meds3.cli train policy ...``, ``torchrun -m meds3.cli ...``)."""

import sys

from meds3.cli import main

sys.exit(main())

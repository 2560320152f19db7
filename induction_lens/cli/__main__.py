"""``python -m induction_lens.cli``: the same as the ``induction-lens`` script."""

import sys

from induction_lens.cli import main

sys.exit(main())

"""``python -m cfer``: the command line, as ``torchrun -m cfer`` starts it."""

import sys

from cfer.cli import main

sys.exit(main())

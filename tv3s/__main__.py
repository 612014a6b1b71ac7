"""`python -m tv3s ...`: the same as the `tv3s` command."""

import sys

from .cli import main

sys.exit(main())

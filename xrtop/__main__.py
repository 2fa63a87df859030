"""`python -m xrtop` runs the command line."""

import sys

from xrtop.cli import main

sys.exit(main())

"""``python -m muxd``."""

import sys

from muxd.cli import main

sys.exit(main())

"""``python -m hostprof``."""

import sys

from hostprof.cli import main

sys.exit(main())

"""``python -m meterlib``: the command line of ``meterlib.cli.main``."""

import sys

from meterlib.cli.main import main

sys.exit(main())

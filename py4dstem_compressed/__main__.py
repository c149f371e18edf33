"""``python -m py4dstem_compressed``: the command line (as ``py4dstem-compressed``)."""

import sys

from py4dstem_compressed_cli import main

sys.exit(main())

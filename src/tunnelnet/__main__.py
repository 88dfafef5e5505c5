"""``python -m tunnelnet`` runs the command line."""

from __future__ import annotations

import sys

from tunnelnet.cli.main import main

sys.exit(main())

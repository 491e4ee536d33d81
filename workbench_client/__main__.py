"""`python -m workbench_client ...` is the `workbench` command."""

from __future__ import annotations

import sys

from workbench_client.cli import main

sys.exit(main())

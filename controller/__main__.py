"""`python -m controller` is the `ccfo` command."""

import sys

from controller.cli import main

sys.exit(main())

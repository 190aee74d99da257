"""`python -m ctjax ...`: the same command line as the `ctjax` script."""

import sys

from ctjax.commands import main

sys.exit(main())

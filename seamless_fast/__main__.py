"""``python -m seamless_fast`` is the ``seamless-fast`` command line."""

import sys

from .cli import main

sys.exit(main())

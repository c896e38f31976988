"""``python -m seamless_fast`` is the ``seamless-fast`` command line."""

import os
import sys

# ``python -m`` puts the working directory first on sys.path; move it last, as the installed
# ``seamless-fast`` has it, so that a stray ``numpy.py`` or ``torch.py`` there cannot shadow a package.
if sys.path and sys.path[0] in ("", os.getcwd()):
    sys.path.append(sys.path.pop(0))

from .cli import main  # noqa: E402

sys.exit(main())

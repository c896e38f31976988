"""The jobs behind the command line: every input checked before any work, then the work.

Each job is split in two: ``prepare_*`` checks every argument (files, sizes,
the model's import, the output path and dtype) and raises :class:`UsageError`
(one line naming the argument) before the model runs on more than one probe
tile; the prepared job's ``run`` does the work, and whatever fails there (the
model, reading, writing) is a failure of the run, not of the arguments.
The command line (:mod:`seamless_fast.cli`) only parses for these.
"""

from ._options import CLI_EXTRA, UsageError, load_area, load_model, parse_size, plan_figures, plan_grid
from ._runs import prepare_demo, prepare_merge, prepare_segment

__all__ = ["CLI_EXTRA", "UsageError", "load_area", "load_model", "parse_size", "plan_figures", "plan_grid",
           "prepare_demo", "prepare_merge", "prepare_segment"]

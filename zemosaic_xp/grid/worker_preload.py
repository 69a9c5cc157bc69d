"""What the fork server of grid workers imports once, before it forks any worker.

Imported only by the fork server (:func:`.processes.start_server`), never by the
package: importing it limits this process's compute libraries to one thread, then
loads what a tile needs — :mod:`.worker` (astropy, the core), scipy.ndimage, and the
numba kernels of grid mode's default stack settings, loaded from numba's cache by
:func:`~.worker.warm_up`. Each worker forked afterwards starts with all of it in
memory (shared copy-on-write) instead of importing it again. The server never runs a
thread of its own (no ``parallel=True`` kernel is called), so forking it is safe.
"""

from __future__ import annotations

import os

from ..compute_threads import THREAD_ENV

for _name in THREAD_ENV:  # before numpy loads its BLAS: the workers compute on one thread
    os.environ[_name] = "1"

from .config import grid_stack_config  # noqa: E402
from .worker import warm_up  # noqa: E402

__all__: list[str] = []

warm_up(grid_stack_config())

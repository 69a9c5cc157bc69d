"""Survey normalisation solved while the first tiles reproject (runs with worker processes).

A tile needs the survey's frame gains and offsets only once its frames are read and
reprojected, which is most of its work. With an executor, the runner therefore
submits the tiles right after the setup and solves the normalisation here, in a
thread of its own process, at the same time; each group's maps are then published
for the waiting tiles (:mod:`.framemaps`). Worker start-up, reprojection and
normalisation overlap instead of following one another.

Nothing else changes: the maps are the same floats, and the tiles use them exactly
as when they travel inside the task, so results are bit-identical to the serial
order (tested). The thread never calls the progress callback; the runner reports for
it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from .framemaps import maps_path, publish_failure, publish_frame_maps

__all__ = ["BackgroundNormalisation"]

logger = logging.getLogger(__name__)


class BackgroundNormalisation:
    """Normalise the plan groups one after the other in a daemon thread.

    Parameters
    ----------
    groups : sequence
        The runner's groups (``grid``, ``out_dir``, ``label``, ``norm``); ``norm`` is
        set here.
    stack_config : StackConfig
        The run's stack settings; ``normalize`` names the method fitted on each pair.
    run_id : str
        Identifier of the run, part of the published file names (:func:`.framemaps.maps_path`).
    keep_planes : bool
        Leave the frames read for the samples in this process's frame cache (tiles
        run in this process too: worker threads).

    Notes
    -----
    Every group's outcome is published, maps or failure, so that no tile waits in
    vain; after a failure the later groups are published as failed too.
    """

    def __init__(self, groups: Sequence[Any], stack_config: Any, run_id: str, *, keep_planes: bool = False) -> None:
        self.groups = list(groups)
        self.keep_planes = keep_planes
        self.config = stack_config
        self.files = {id(g): maps_path(Path(g.out_dir) / "tiles", run_id, g.label) for g in self.groups}
        self.seconds: dict[int, float] = {}
        self.error: BaseException | None = None
        self._stop = False
        self._done = {id(g): threading.Event() for g in self.groups}
        self._thread = threading.Thread(target=self._run, name="zemosaic-grid-normalise", daemon=True)

    def start(self) -> BackgroundNormalisation:
        """Start the thread (creating each group's ``tiles/`` folder first).

        Returns
        -------
        BackgroundNormalisation
            This object, so that construction and start read as one expression.
        """
        for group in self.groups:
            (Path(group.out_dir) / "tiles").mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def maps_file(self, group: Any) -> str:
        """Return the file where ``group``'s maps appear.

        Parameters
        ----------
        group : object
            One of the groups given to the constructor.

        Returns
        -------
        str
            :func:`.framemaps.maps_path` of the run and the group's label, for the tile tasks.
        """
        return str(self.files[id(group)])

    def _run(self) -> None:
        from ..backends import select_backend
        from .normalise import normalise_frames

        xp = select_backend("numpy").xp
        for group in self.groups:
            path = self.files[id(group)]
            try:
                if self.error is not None or self._stop:
                    publish_failure(path, self.error or RuntimeError("the run stopped"))
                    continue
                t0 = time.perf_counter()
                group.norm = normalise_frames(group.grid, self.config, xp=xp, keep_planes=self.keep_planes)
                publish_frame_maps(path, group.norm.gains, group.norm.offsets)
                self.seconds[id(group)] = time.perf_counter() - t0
            except BaseException as exc:  # noqa: BLE001 - re-raised by wait() in the runner
                self.error = exc
                publish_failure(path, exc)
                logger.debug("[GRID] survey normalisation failed in the background: %s", exc)
            finally:
                self._done[id(group)].set()

    def wait(self, group: Any) -> Any:
        """Block until ``group`` is normalised; return its normalisation.

        Parameters
        ----------
        group : object
            One of the groups given to the constructor.

        Returns
        -------
        FrameNormalisation
            The group's maps (also set as ``group.norm``).

        Raises
        ------
        BaseException
            The error of the normalisation, whichever group raised it.
        """
        self._done[id(group)].wait()
        if self.error is not None:
            raise self.error
        return group.norm

    def is_done(self, group: Any) -> bool:
        """Tell whether ``group``'s outcome is published.

        Parameters
        ----------
        group : object
            One of the groups given to the constructor.

        Returns
        -------
        bool
            True once its maps or its failure are published.
        """
        return self._done[id(group)].is_set()

    def stop(self) -> None:
        """Skip the groups not started yet (a cancelled or failed run); they are published as failed."""
        self._stop = True

    def join(self) -> None:
        """Wait for the thread (idempotent)."""
        if self._thread.is_alive():
            self._thread.join()

    def cleanup(self) -> None:
        """Delete the published files (the tiles that needed them are done)."""
        for path in self.files.values():
            for p in (path, path.with_suffix(".failed")):
                p.unlink(missing_ok=True)

"""``tiles/manifest.json``: which tiles are finished, from which inputs and settings.

After each finished tile the runner records ``{tile_id: {inputs_hash, config_hash,
file}}`` and rewrites the manifest atomically (temporary file + rename), so a run
killed at any moment leaves a manifest that lists exactly the tiles on disk. A rerun
with ``resume=True`` skips a tile whose hashes match and whose file exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from .._version import __version__
from ..io.atomic import atomic_path
from .config import GridConfig
from .geometry import GlobalGrid, TileSpec

__all__ = ["TileManifest", "tile_inputs_hash", "config_hash", "MANIFEST_NAME"]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
_FORMAT = 1


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tile_inputs_hash(grid: GlobalGrid, tile: TileSpec, maps: Any = ()) -> str:
    """Hash what a tile is made from.

    Parameters
    ----------
    grid : GlobalGrid
        The run's grid (canvas WCS and frames).
    tile : TileSpec
        The tile.
    maps : sequence, optional
        The survey normalisation of the tile's frames, JSON-able (the runner passes
        ``[gain, offset]`` per frame, lists of float32 values); empty when there is none.

    Returns
    -------
    str
        SHA-256 hex digest of the canvas WCS header, the tile's box, each frame's
        path, size, modification time, WCS digest, exposure and patch box, and ``maps``.
        A tile is reused on resume only when this digest is unchanged.
    """
    frames = []
    for index, box in zip(tile.frames, tile.patch_boxes):
        f = grid.frames[index]
        frames.append([f.path, f.size_bytes, f.mtime_ns, f.wcs_key, f.exposure, list(box)])
    return _digest({"canvas": grid.header_string(), "box": [tile.y0, tile.y1, tile.x0, tile.x1],
                    "frames": frames, "maps": list(maps)})


def config_hash(config: GridConfig) -> str:
    """Hash the settings a tile's pixels depend on, and the library version.

    Parameters
    ----------
    config : GridConfig
        The run's settings; only :meth:`GridConfig.tile_hash_dict` counts.

    Returns
    -------
    str
        SHA-256 hex digest; a new zemosaic_xp version changes it, so tiles are
        remade after an upgrade.
    """
    return _digest({"config": config.tile_hash_dict(), "version": __version__})


class TileManifest:
    """The finished-tile record of one tiles folder.

    Parameters
    ----------
    tiles_dir : str or path-like
        The ``tiles/`` folder; the manifest is ``<tiles_dir>/manifest.json``. An
        unreadable manifest is logged and treated as empty, as is (silently) one of
        another format version.
    fresh : bool
        Start empty (``resume=False``) instead of reading the existing manifest.

    Attributes
    ----------
    tiles_dir : Path
        The folder.
    path : Path
        The manifest file.
    entries : dict of str to dict
        Per tile id (as a string): ``inputs_hash``, ``config_hash``, ``file`` (name in
        ``tiles_dir``) and any extra fields recorded.
    """

    def __init__(self, tiles_dir: str | os.PathLike, *, fresh: bool = False) -> None:
        self.tiles_dir = Path(tiles_dir)
        self.path = self.tiles_dir / MANIFEST_NAME
        self.entries: dict[str, dict[str, Any]] = {} if fresh else self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            tiles = data["tiles"] if data.get("format") == _FORMAT else {}
            return {str(k): dict(v) for k, v in tiles.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("[GRID] %s is unreadable (%s); every tile will be processed", self.path, exc)
            return {}

    def is_done(self, tile_id: int, inputs_hash: str, cfg_hash: str) -> bool:
        """Tell whether a tile can be reused.

        Parameters
        ----------
        tile_id : int
            The tile.
        inputs_hash : str
            :func:`tile_inputs_hash` of the tile now.
        cfg_hash : str
            :func:`config_hash` of the run's settings now.

        Returns
        -------
        bool
            True when the tile was finished from the same inputs and settings and its
            file exists.
        """
        entry = self.entries.get(str(tile_id))
        if not entry or entry.get("inputs_hash") != inputs_hash or entry.get("config_hash") != cfg_hash:
            return False
        return (self.tiles_dir / str(entry.get("file", ""))).is_file()

    def file_of(self, tile_id: int) -> Path:
        """Return the file of a recorded tile.

        Parameters
        ----------
        tile_id : int
            A tile present in :attr:`entries`.

        Returns
        -------
        Path
            ``tiles_dir / file`` (not checked for existence).

        Raises
        ------
        KeyError
            The tile is not recorded.
        """
        return self.tiles_dir / str(self.entries[str(tile_id)]["file"])

    def record(self, tile_id: int, inputs_hash: str, cfg_hash: str, file: str, **extra: Any) -> None:
        """Add a finished tile and rewrite the manifest atomically.

        Parameters
        ----------
        tile_id : int
            The tile; an earlier entry for it is replaced.
        inputs_hash : str
            :func:`tile_inputs_hash` of the tile.
        cfg_hash : str
            :func:`config_hash` of the run's settings.
        file : str
            File name of the tile inside ``tiles_dir``.
        **extra
            JSON-able fields stored with the entry (the runner records ``n_frames``).
        """
        entry = {"inputs_hash": inputs_hash, "config_hash": cfg_hash, "file": file}
        entry.update(extra)
        self.entries[str(tile_id)] = entry
        self.save()

    def forget(self, tile_id: int) -> None:
        """Drop a tile (it is being reprocessed); not saved until the next record/save.

        Parameters
        ----------
        tile_id : int
            The tile; nothing happens when it is not recorded.
        """
        self.entries.pop(str(tile_id), None)

    def save(self) -> None:
        """Write the manifest to a temporary file, then rename it over the old one."""
        self.tiles_dir.mkdir(parents=True, exist_ok=True)
        ordered = dict(sorted(self.entries.items(), key=lambda kv: int(kv[0])))
        text = json.dumps({"format": _FORMAT, "tiles": ordered}, indent=1, sort_keys=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(text, encoding="utf-8")

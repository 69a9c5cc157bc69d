"""``tiles/manifest.json``: which tiles are finished, from which inputs and settings.

After each finished tile the runner records ``{tile_id: {inputs_hash, config_hash,
file, size, blake2b}}`` and rewrites the manifest atomically (temporary file +
rename), so a run killed at any moment leaves a manifest that lists exactly the tiles
on disk. Each save reads the manifest again and applies this run's changes to it
(read-modify-write); the runner does it while it holds the output folder's run lock
(:mod:`zemosaic_xp.io.runlock`), so no other run writes the manifest meanwhile.

A rerun with ``resume=True`` skips a tile whose hashes match and whose file still has
the recorded size and BLAKE2b digest (:meth:`TileManifest.verify`): a tile truncated
or overwritten since is recomputed.
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

__all__ = ["TileManifest", "tile_inputs_hash", "config_hash", "file_digest", "MANIFEST_NAME"]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
# 2: entries carry the tile file's size and BLAKE2b digest. Manifests of format 1 are
# read as empty: their tiles are recomputed once.
_FORMAT = 2
_CHUNK_BYTES = 1 << 20


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
    """Size and BLAKE2b digest of a file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    size : int
        Bytes read.
    digest : str
        BLAKE2b (32-byte digest) in hex.

    Raises
    ------
    OSError
        The file cannot be read.
    """
    h = hashlib.blake2b(digest_size=32)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


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
        Start empty (``resume=False``) instead of reading the existing manifest; the
        first :meth:`save` then drops the entries on disk.

    Attributes
    ----------
    tiles_dir : Path
        The folder.
    path : Path
        The manifest file.
    entries : dict of str to dict
        Per tile id (as a string): ``inputs_hash``, ``config_hash``, ``file`` (name in
        ``tiles_dir``), ``size`` and ``blake2b`` of the file, and any extra fields
        recorded.
    """

    def __init__(self, tiles_dir: str | os.PathLike, *, fresh: bool = False) -> None:
        self.tiles_dir = Path(tiles_dir)
        self.path = self.tiles_dir / MANIFEST_NAME
        self.entries: dict[str, dict[str, Any]] = {} if fresh else self._load()
        # This object's changes, applied again to the manifest on disk at each save.
        self._clear = fresh
        self._set: dict[str, dict[str, Any]] = {}
        self._dropped: set[str] = set()

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

    def matches(self, tile_id: int, inputs_hash: str, cfg_hash: str) -> bool:
        """Tell whether a tile was recorded with these inputs and settings (its file unchecked).

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
            True when both hashes are the recorded ones.
        """
        entry = self.entries.get(str(tile_id))
        return bool(entry) and entry.get("inputs_hash") == inputs_hash and entry.get("config_hash") == cfg_hash

    def verify(self, tile_id: int) -> str | None:
        """Check a recorded tile's file against its recorded size and digest.

        Parameters
        ----------
        tile_id : int
            A tile present in :attr:`entries`.

        Returns
        -------
        str or None
            None when the file is the one recorded; else what is wrong, in words
            (missing, unreadable, another size, another digest), naming the file.
        """
        entry = self.entries[str(tile_id)]
        path = self.tiles_dir / str(entry.get("file", ""))
        if not path.is_file():
            return f"'{path}' is missing"
        try:
            size, digest = file_digest(path)
        except OSError as exc:
            return f"'{path}' cannot be read ({exc})"
        if size != entry.get("size"):
            return f"'{path}' has {size} bytes, {entry.get('size')} were written"
        if digest != entry.get("blake2b"):
            return f"'{path}' is not the file that was written (its BLAKE2b digest differs)"
        return None

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
            file is the one written then (:meth:`verify`).
        """
        return self.matches(tile_id, inputs_hash, cfg_hash) and self.verify(tile_id) is None

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
        """Add a finished tile, with its file's size and digest, and save the manifest.

        Parameters
        ----------
        tile_id : int
            The tile; an earlier entry for it is replaced.
        inputs_hash : str
            :func:`tile_inputs_hash` of the tile.
        cfg_hash : str
            :func:`config_hash` of the run's settings.
        file : str
            File name of the tile inside ``tiles_dir``; it is read once for its
            digest.
        **extra
            JSON-able fields stored with the entry (the runner records ``n_frames``).

        Raises
        ------
        OSError
            The tile file cannot be read.
        """
        size, digest = file_digest(self.tiles_dir / file)
        entry = {"inputs_hash": inputs_hash, "config_hash": cfg_hash, "file": file, "size": size,
                 "blake2b": digest}
        entry.update(extra)
        self.entries[str(tile_id)] = entry
        self._set[str(tile_id)] = entry
        self._dropped.discard(str(tile_id))
        self.save()

    def forget(self, tile_id: int) -> None:
        """Drop a tile (it is being reprocessed); not saved until the next record/save.

        Parameters
        ----------
        tile_id : int
            The tile; nothing happens when it is not recorded.
        """
        self.entries.pop(str(tile_id), None)
        self._set.pop(str(tile_id), None)
        self._dropped.add(str(tile_id))

    def save(self) -> None:
        """Read the manifest again, apply this object's changes, write it atomically.

        Read-modify-write: entries another writer added since this object read the
        manifest are kept. :attr:`entries` becomes what was written.
        """
        self.tiles_dir.mkdir(parents=True, exist_ok=True)
        merged = {} if self._clear else self._load()
        for key in self._dropped:
            merged.pop(key, None)
        merged.update(self._set)
        self.entries = merged
        ordered = dict(sorted(merged.items(), key=lambda kv: int(kv[0])))
        text = json.dumps({"format": _FORMAT, "tiles": ordered}, indent=1, sort_keys=True)
        with atomic_path(self.path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        self._clear = False

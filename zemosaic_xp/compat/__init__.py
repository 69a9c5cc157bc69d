"""Compatibility with ZeMosaic: its config keys and files, its callback levels, its worker's calls.

Keys, the config-file loader and the allow-list of ignored keys are in :mod:`.zemosaic`;
the readers of booleans, numbers, pairs and method names in :mod:`.values`; the
callback levels its GUI forwards in :mod:`.gui_events`. ZeMosaic's worker calls are
:mod:`.grid_entry` (``run_grid_mode`` with the worker's keywords) and :mod:`.phase3`
(``stack_master_tile_auto``, ``start_phase3``), also reachable as attributes of
:mod:`.zemosaic`; they import the adapters when called (docs/zemosaic.md).

Adapters (``classic``, ``grid``, ``cli``) and ``StackConfig.from_dict`` read ZeMosaic's
settings through this package only, so each key is spelled and parsed in one place.
"""

from __future__ import annotations

__all__ = ["zemosaic", "values", "gui_events", "grid_entry", "phase3"]

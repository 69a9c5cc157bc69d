"""``zemosaic-xp`` command line: one sub-command per module of this package.

Each sub-command module exposes ``register(subparsers)``, which adds its parser and
sets ``func`` (called with the parsed namespace, returns an exit code). Errors are one
clear line on stderr and a non-zero exit code; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import logging
import sys
from collections.abc import Iterator

__all__ = ["main", "CliError"]

# Sub-command modules, in the order ``--help`` lists them.
_COMMAND_MODULES: tuple[str, ...] = (
    "zemosaic_xp.cli.demo_cmd",
    "zemosaic_xp.cli.grid_cmd",
    "zemosaic_xp.cli.stack_cmd",
    "zemosaic_xp.cli.bench_cmd",
    "zemosaic_xp.cli.telemetry_cmd",
    "zemosaic_xp.cli.kernels_cmd",
)


# The garbage collector's thresholds while a sub-command runs: a young collection every
# 10 000 net allocations instead of 700, and a full one (which walks every object of
# astropy, SciPy and numba) only after 20 x 20 of them instead of 10 x 10 (issue 14).
_COMMAND_GC_THRESHOLDS = (10_000, 20, 20)


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _build_parser() -> argparse.ArgumentParser:
    from zemosaic_xp._version import __version__

    parser = argparse.ArgumentParser(
        prog="zemosaic-xp",
        description="Stack astrophotography frames on NumPy, CuPy or PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"zemosaic-xp {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and DEBUG logs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _no_collection_at_exit() -> None:
    """Freeze the garbage collector at this process's exit, before the interpreter's shutdown.

    The shutdown collects garbage over every object the libraries made (astropy,
    SciPy, numba: about 0.45 s of a grid run, issue 14) only to free memory the
    process is giving back anyway; frozen objects are skipped. The other ``atexit``
    handlers and the objects' finalisers (``weakref.finalize``) still run. Registered
    once however often :func:`main` is called (tests call it many times).
    """
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


@contextlib.contextmanager
def _fewer_collections(*, restore: bool = True) -> Iterator[None]:
    """Raise the collector's thresholds to :data:`_COMMAND_GC_THRESHOLDS` within the block.

    A command imports a few million objects (astropy, SciPy, numba) that live until
    the process ends; each full collection walks them all, and the default thresholds
    ran about 10 of them during a small grid run (0.18 s, with 0.11 s of young
    collections: 0.29 s in all; 0.13 s with these thresholds). Reference cycles are
    still collected, a little later.

    Parameters
    ----------
    restore : bool
        Put the previous thresholds back after the block. Restoring them makes the
        next allocation run a full collection over all those objects (~0.06 s on a
        2-core machine); a command that is the whole process (``main()`` reading
        ``sys.argv``) skips it, as the process ends right after.
    """
    saved = gc.get_threshold()
    gc.set_threshold(*_COMMAND_GC_THRESHOLDS)
    try:
        yield
    finally:
        if restore:
            gc.set_threshold(*saved)


def main(argv: list[str] | None = None) -> int:
    """Run the ``zemosaic-xp`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Process exit code: the sub-command's (0 on success), 2 for a usage or input
        error (:class:`CliError`, ``ValueError``, ``OSError``) or a missing
        sub-command, 1 for any other error, 130 when interrupted.
    """
    _no_collection_at_exit()
    parser = _build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        with _fewer_collections(restore=argv is not None):  # argv None: this process's own command
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("zemosaic-xp: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI turns every error into one line
        if args.debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"zemosaic-xp: error: {msg}", file=sys.stderr)
        return 2 if isinstance(exc, (CliError, ValueError, FileNotFoundError, OSError)) else 1

"""``zemosaic-xp grid INPUT OUTPUT``: build a mosaic from a folder with a ``stack_plan.csv``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

__all__ = ["register", "add_run_options", "run_from_args", "print_summary", "report_cancelled"]

#: Exit code when the mosaic was written but some tiles failed.
EXIT_PARTIAL = 3
#: Exit code after a Ctrl-C (128 + SIGINT, as a shell reports it): stopped after the
#: running tiles, which are kept for a resume; or aborted by a second Ctrl-C.
EXIT_CANCELLED = 130

_EXIT_CODES = """exit codes:
  0    the mosaic was written
  3    the mosaic was written, but some tiles failed (listed on stdout)
  130  Ctrl-C: the first one stops after the running tiles, which are kept with every
       finished tile (run the same command again to resume); a second one aborts at once
  2    bad input or settings, 1 any other error (one line on stderr; --debug for the traceback)"""


def register(subparsers: Any) -> None:
    """Add the ``grid`` sub-command to `subparsers`.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``zemosaic-xp`` parser's sub-command group.
    """
    parser = subparsers.add_parser(
        "grid",
        help="mosaic the plate-solved frames listed in INPUT/stack_plan.csv",
        description=("Grid mode: frames listed in INPUT/stack_plan.csv are reprojected onto a global "
                     "grid of tiles, each tile is stacked (normalise, weight, reject, combine) in "
                     "parallel, and the tiles are matched and blended into OUTPUT/mosaic_grid.fits. "
                     "Ctrl-C once stops after the running tiles (rerun to resume), twice aborts."),
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT", help="folder holding stack_plan.csv")
    parser.add_argument("output", metavar="OUTPUT", help="output folder (created if missing)")
    add_run_options(parser)
    parser.set_defaults(func=_run)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add the options shared by ``grid`` and ``demo`` to a parser.

    ``--config``, ``--cosmic``, ``--workers``, ``--scheduler``, ``--gpu``, ``--resume`` and
    ``--telemetry``; :func:`run_from_args` reads them.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command's parser.
    """
    parser.add_argument("--config", metavar="JSON", default=None,
                        help="a ZeMosaic zemosaic_config.json (grid_*, stacking_*, telemetry keys)")
    parser.add_argument("--cosmic", choices=("off", "auto", "always"), default=None,
                        help="per-frame cosmic-ray masks before the reprojection: auto = where fewer than "
                             "cosmic_min_depth (7) frames cover a pixel (default: the config's, else off)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="worker processes; 0 = auto (cpu count - 2; the default), 1 = in this "
                             "process; auto and N are capped by the tiles, the CPU cores and the RAM "
                             "(a warning says when N was)")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="run the tiles on an existing dask cluster: its scheduler address "
                             "(tcp://host:8786) or scheduler file; frames and OUTPUT must be on a path "
                             "the workers share (needs zemosaic-xp[dask]; --workers is then ignored)")
    parser.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=None,
                        help="stack tiles on the GPU (default: use_gpu_grid of the config, else off)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="skip tiles finished by an earlier run with the same inputs (default: on)")
    parser.add_argument("--telemetry", action=argparse.BooleanOptionalAction, default=None,
                        help="log CPU/RAM/GPU to OUTPUT/resource_telemetry.csv "
                             "(default: enable_resource_telemetry of the config)")


def _notice(text: str) -> None:
    """Write to stderr from a signal handler: unbuffered, so never a reentrant buffer write."""
    try:
        os.write(sys.stderr.fileno(), text.encode())
    except (OSError, ValueError, AttributeError):  # no file descriptor (captured stderr)
        print(text, end="", file=sys.stderr)


def _cancel_on_sigint() -> tuple[threading.Event, Any]:
    """First Ctrl-C sets the cancel event (stop after the running tiles); the second aborts.

    A terminal sends SIGINT to the whole process group; the worker processes ignore it
    (``zemosaic_xp.grid.processes``), so the running tiles finish and are kept.
    """
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        _notice("\nzemosaic-xp: Ctrl-C: stopping after the running tile(s); Ctrl-C again to abort\n")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
    return cancel, previous


def run_from_args(args: argparse.Namespace, input_folder: Path, output_folder: Path, *,
                  config: dict[str, Any] | None = None) -> Any:
    """Run grid mode with the CLI's defaults (auto workers) and a progress bar.

    The first Ctrl-C stops after the running tiles, the second interrupts. Unless
    ``--debug``, the grid's INFO lines are hidden while the bar is drawn.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`add_run_options` (plus ``quiet`` and ``debug``).
    input_folder : pathlib.Path
        Folder holding ``stack_plan.csv``.
    output_folder : pathlib.Path
        Where the tiles and the mosaic go.
    config : dict, optional
        ZeMosaic config keys that override those of ``--config``.

    Returns
    -------
    GridResult
        What :func:`zemosaic_xp.grid.run_grid_mode` returns.
    """
    from zemosaic_xp.compute_threads import one_compute_thread

    one_compute_thread()  # before NumPy and SciPy load their BLAS (importing the grid loads NumPy)
    from zemosaic_xp.grid import processes

    # The workers' fork server imports what tiles need (~1 s) in its own process: started
    # before this process's imports and the run's setup, it is ready when the first tile
    # is submitted instead of delaying it (the run takes the server over, see start_server).
    early_server = _likely_pool(args) and processes.start_server()
    try:
        return _run_grid(args, input_folder, output_folder, config)
    finally:
        if early_server:
            processes.stop_server()


def _likely_pool(args: argparse.Namespace) -> bool:
    """Whether the run will probably stack in worker processes (from the options alone).

    True unless ``--workers 1``, ``--gpu``, ``--scheduler`` or a single CPU; a config
    that asks for one worker makes it a wasted start (its server is stopped at the end).
    """
    if args.workers == 1 or args.gpu or getattr(args, "scheduler", None):
        return False
    return (os.cpu_count() or 1) > 1


def _run_grid(args: argparse.Namespace, input_folder: Path, output_folder: Path,
              config: dict[str, Any] | None) -> Any:
    """:func:`run_from_args` once the fork server is starting."""
    from zemosaic_xp.cli.progress import ProgressBar
    from zemosaic_xp.compat.zemosaic import load_config_file
    from zemosaic_xp.grid import run_grid_mode

    keys = load_config_file(args.config) if args.config else {}
    keys.update(config or {})
    if getattr(args, "cosmic", None) is not None:
        keys["cosmic"] = args.cosmic  # the field name: it wins over the config's ZeMosaic key
    if args.telemetry is not None:
        keys["enable_resource_telemetry"] = args.telemetry
    workers = args.workers
    if workers is None and keys.get("grid_workers") in (None, ""):
        workers = 0  # the CLI defaults to auto; the library to 1
    show_bar = not getattr(args, "quiet", False)
    bar = ProgressBar(enabled=show_bar)
    cancel, previous = _cancel_on_sigint()
    # The bar replaces the per-tile INFO lines (which would break it); --debug shows both.
    quiet_logs = show_bar and not getattr(args, "debug", False)
    grid_logger = logging.getLogger("zemosaic_xp.grid")
    saved_level = grid_logger.level
    if quiet_logs:
        grid_logger.setLevel(logging.WARNING)
    try:
        with ExitStack() as stack:
            executor = _cluster_executor(stack, getattr(args, "scheduler", None), args.workers)
            policy = _gpu_policy(args.gpu, keys, bar, debug=getattr(args, "debug", False))
            return run_grid_mode(input_folder, output_folder, bar, config=keys, grid_use_gpu=args.gpu,
                                 grid_workers=workers, executor=executor, resume=args.resume, cancel=cancel,
                                 gpu_policy=policy)
    finally:
        bar.close()
        grid_logger.setLevel(saved_level)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)


def _gpu_policy(flag: bool | None, keys: dict[str, Any], bar: Any, *, debug: bool) -> Any:
    """The run's GPU policy when ``--gpu`` (or the config) asks for the GPU, else None.

    Its health check runs here, and an unusable GPU is said at once in one line, with
    the reason, whatever the log level (the run goes on on the CPU, as it always did);
    the policy's own INFO line saying the same is left to ``--debug``.
    """
    from zemosaic_xp.compat.zemosaic import GRID_GPU_KEYS, gpu_flag, naming_keys
    from zemosaic_xp.gpu import GpuPolicy

    asked = "--gpu"
    if flag is None:
        with naming_keys(keys):
            flag = gpu_flag(keys, GRID_GPU_KEYS)
        asked = "the config's GPU switch"
    if not flag:
        return None
    policy = GpuPolicy.for_grid("auto")
    gpu_logger = logging.getLogger("zemosaic_xp.gpu")
    saved_level = gpu_logger.level
    if not debug:
        gpu_logger.setLevel(logging.WARNING)
    try:
        usable = policy.gpu_backend() is not None
    finally:
        gpu_logger.setLevel(saved_level)
    if not usable:
        reason = " ".join(policy.describe().split())
        bar.print_above(f"zemosaic-xp: GPU requested ({asked}) but not usable: {reason}; the tiles are "
                        f"stacked on the CPU")
    return policy


def _cluster_executor(stack: ExitStack, address: str | None, workers: int | None) -> Any:
    """The executor of the dask cluster at ``address`` (None: run locally), closed by ``stack``."""
    from zemosaic_xp.cli import CliError
    from zemosaic_xp.grid.cluster import connect_cluster

    if address is None:
        return None
    try:
        client = stack.enter_context(connect_cluster(address))
    except (ImportError, FileNotFoundError, ConnectionError) as exc:
        raise CliError(f"--scheduler: {exc}") from exc
    if workers is not None:
        print("zemosaic-xp: --workers is ignored with --scheduler (the cluster's workers run the tiles)",
              file=sys.stderr)
    return client.get_executor()


def print_summary(result: Any) -> None:
    """Print the paths and counters of a grid run on stdout, one item a line.

    Parameters
    ----------
    result : GridResult
        What :func:`zemosaic_xp.grid.run_grid_mode` returned; each group of a
        grouped run gets its own paths.
    """
    results = result.groups or {None: result}
    for label, res in results.items():
        prefix = f"[{label}] " if label else ""
        if res.mosaic_path is not None:
            print(f"{prefix}mosaic:    {res.mosaic_path}")
            print(f"{prefix}coverage:  {res.coverage_path}")
            print(f"{prefix}preview:   {res.preview_path}")
    if result.telemetry_csv is not None:
        print(f"telemetry: {result.telemetry_csv}")
    rejected = f", {result.rejected_pct:.2f} % samples rejected" if result.rejected_pct is not None else ""
    print(f"tiles: {result.tiles_processed} stacked, {result.tiles_skipped} resumed, "
          f"{len(result.failed_tiles)} failed of {result.tiles_total}; {result.n_frames} frames; "
          f"{result.workers} worker(s), GPU {'on' if result.use_gpu else 'off'}{rejected}; "
          f"{result.elapsed_sec:.1f} s")
    for tile_id, error in sorted(result.failed_tiles.items()):
        print(f"failed tile {tile_id}: {error}")


def report_cancelled(result: Any, output_folder: Path) -> int:
    """Say on stderr how many tiles a cancelled run kept, and return its exit code.

    Parameters
    ----------
    result : GridResult
        A run that returned with ``cancelled=True``.
    output_folder : pathlib.Path
        Where its tiles are (the OUTPUT of the command).

    Returns
    -------
    int
        :data:`EXIT_CANCELLED` (130).
    """
    done = result.tiles_processed + result.tiles_skipped
    print(f"zemosaic-xp: cancelled: {done} of {result.tiles_total} tile(s) done and kept in {output_folder}; "
          f"run the same command again to resume", file=sys.stderr)
    return EXIT_CANCELLED


def _run(args: argparse.Namespace) -> int:
    result = run_from_args(args, Path(args.input), Path(args.output))
    if result.cancelled:
        return report_cancelled(result, Path(args.output))
    print_summary(result)
    return EXIT_PARTIAL if result.failed_tiles else 0

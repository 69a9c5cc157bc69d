"""``zemosaic-xp bench``: run the benchmark suite and print its markdown table.

The suite lives in ``benchmarks/`` of a source checkout (it is not installed with
the package); this command runs it with pytest-benchmark and renders the JSON with
``benchmarks/report.py``, exactly as ``docs/performance.md`` describes.
``zemosaic-xp bench --peers [OPTIONS]`` runs ``benchmarks/peers.py`` instead (the
whole-process comparison with Siril) with the options that follow ``--peers``, and
``zemosaic-xp bench --peers-grid [OPTIONS]`` runs ``benchmarks/peers_grid.py`` (grid
mosaics against SWarp and reproject) the same way.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["register"]


def _find_benchmarks(explicit: str | None) -> Path:
    from . import CliError

    candidates = [Path(explicit)] if explicit else [
        Path.cwd() / "benchmarks", Path(__file__).resolve().parents[2] / "benchmarks"]
    for path in candidates:
        if (path / "report.py").is_file():
            return path
    where = ", ".join(str(p) for p in candidates)
    msg = (f"no benchmarks/ directory found (looked in {where}); run `zemosaic-xp bench` from a "
           f"source checkout of zemosaic_xp or pass --suite PATH")
    raise CliError(msg)


def _load_script(suite: Path, name: str):
    """Import ``suite/name`` (a script of the suite, not a package module) and return it."""
    spec = importlib.util.spec_from_file_location(f"_zemosaic_bench_{Path(name).stem}", suite / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _peers_argv(args: argparse.Namespace) -> list[str]:
    """The options for ``peers.py``: those after ``--peers``, plus --cases/--json/-o given before it."""
    from . import CliError

    if args.full:
        msg = "`--full` is an option of the pytest suite, not of `--peers`; use --peers --cases ... instead"
        raise CliError(msg)
    before = [item for flag, value in (("--cases", args.cases), ("--json", args.json), ("--output", args.output))
              if value for item in (flag, value)]
    return before + list(args.peers)


def _peers_grid_argv(args: argparse.Namespace) -> list[str]:
    """The options for ``peers_grid.py``: those after ``--peers-grid``, plus --json/-o given before it."""
    from . import CliError

    if args.full or args.cases:
        msg = ("`--full` and `--cases` are options of the pytest suite, not of `--peers-grid`; use "
               "--peers-grid --surveys small,large instead")
        raise CliError(msg)
    before = [item for flag, value in (("--json", args.json), ("--output", args.output)) if value
              for item in (flag, value)]
    return before + list(args.peers_grid)


def _run_script(suite: Path, name: str, argv: list[str]) -> int:
    """``main(argv)`` of the script ``suite/name``."""
    if not (suite / name).is_file():
        from . import CliError

        msg = f"no {name} in {suite}; run from a source checkout of zemosaic_xp or pass --suite PATH"
        raise CliError(msg)
    return int(_load_script(suite, name).main(argv))


def _run(args: argparse.Namespace) -> int:
    suite = _find_benchmarks(args.suite)
    if args.peers is not None:
        return _run_script(suite, "peers.py", _peers_argv(args))
    if getattr(args, "peers_grid", None) is not None:
        return _run_script(suite, "peers_grid.py", _peers_grid_argv(args))
    return _run_suite(args, suite)


def _run_suite(args: argparse.Namespace, suite: Path) -> int:
    import pytest

    env_before = {k: os.environ.get(k) for k in ("ZEMOSAIC_BENCH_FULL", "ZEMOSAIC_BENCH_CASES")}
    os.environ["ZEMOSAIC_BENCH_FULL"] = "1" if args.full else ""
    if args.cases:
        os.environ["ZEMOSAIC_BENCH_CASES"] = args.cases
    json_path = Path(args.json) if args.json else Path(tempfile.mkdtemp()) / "bench.json"
    try:
        code = pytest.main([str(suite), "-q", "--benchmark-only", f"--benchmark-json={json_path}",
                            "-p", "no:cacheprovider", f"--rootdir={suite.parent}"])
    finally:
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if code != 0 or not json_path.is_file():
        return int(code) or 1
    report = _load_script(suite, "report.py")
    out = ["--output", args.output] if args.output else []
    return report.main([str(json_path), *out])


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` sub-command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``zemosaic-xp`` parser's sub-command group.
    """
    parser = subparsers.add_parser(
        "bench", help="run the benchmark suite and print the markdown table",
        description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="the full matrix of docs/performance.md (5-10 minutes on 2 cores); "
                             "default: the quick matrix (seconds)")
    parser.add_argument("--cases", help="comma-separated case names, e.g. m32_512,rgb32_512")
    parser.add_argument("--json", help="keep the pytest-benchmark JSON here")
    parser.add_argument("-o", "--output", help="write the markdown table here (default stdout)")
    parser.add_argument("--suite", help="path of the benchmarks/ directory (default: found from cwd)")
    parser.add_argument("--peers", nargs=argparse.REMAINDER, default=None, metavar="OPTIONS",
                        help="run the whole-process comparison with Siril (benchmarks/peers.py) instead; "
                             "every option after --peers goes to it (--cases 32x1024 --repeat 3 ..., "
                             "see `python benchmarks/peers.py --help`)")
    parser.add_argument("--peers-grid", nargs=argparse.REMAINDER, default=None, metavar="OPTIONS",
                        help="run the whole-process grid comparison with SWarp and reproject "
                             "(benchmarks/peers_grid.py) instead; every option after --peers-grid goes to it "
                             "(--surveys small --workers 1,2 --repeat 3 ..., see "
                             "`python benchmarks/peers_grid.py --help`)")
    parser.set_defaults(func=_run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_run(argparse.Namespace(full=False, cases=None, json=None, output=None, suite=None, peers=None,
                                      peers_grid=None)))

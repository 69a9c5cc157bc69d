"""The layers of docs/architecture.md, checked: who may import whom, one home per concept.

Every ``import`` of the package (module level or inside a function) is read with
``ast``; a new dependency that points up the layers fails here and must either be
removed or be written into docs/architecture.md and ``ALLOWED`` together.
"""

from __future__ import annotations

import ast
import pathlib
import re
import tokenize

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "zemosaic_xp"

#: Package (or top-level module) -> the packages it may import. docs/architecture.md.
ALLOWED = {
    "core": {"compat"},  # only StackConfig.from_dict / to_dict(zemosaic=True), lazily
    "backends": {"core"},
    "compat": {"core"},
    "io": {"core", "backends"},
    "gpu": {"core", "backends"},
    "telemetry": {"backends"},
    "classic": {"core", "backends", "gpu", "io", "compat", "telemetry", "nddata", "_version"},
    "mosaic": {"core", "io", "host_heap"},
    "grid": {"core", "backends", "gpu", "io", "mosaic", "compat", "telemetry", "_version", "compute_threads",
             "host_heap"},
    "diagnostics": {"core", "mosaic"},
    "synthetic": {"io"},
    "api": {"core", "backends", "io", "nddata"},  # io.cosmic: the host pre-pass of `cosmic`
    "nddata": {"core", "backends", "io"},
    "ccd_combine": {"api", "core", "io", "nddata"},
    "aot_workloads": {"api", "backends", "classic", "core", "grid", "synthetic"},  # the kernels' build: real stacks
    "compute_threads": set(),  # the BLAS / OpenMP thread variables: nothing of ours, no NumPy
    "host_heap": set(),  # malloc_trim between a run's phases: nothing of ours, no NumPy
    "cli": None,  # the top: anything
    "__init__": {"_version"},  # the rest is imported lazily, by name
    "_version": set(),
}
#: Modules that may import more than their layer: ZeMosaic's worker entries sit at the top
#: of compat (they call the adapters; nothing below imports them, and they import the
#: adapters inside the calls). docs/architecture.md.
ALLOWED_MODULES = {
    "compat/grid_entry.py": {"core", "grid", "io"},
    "compat/phase3.py": {"core", "classic", "gpu", "telemetry"},
}


def _imports(path: pathlib.Path) -> set[str]:
    """First-level packages of zemosaic_xp that ``path`` imports (relative or absolute)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[:-1] if path.name != "__init__.py" else parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            found.update([target[0]] if target else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("zemosaic_xp."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("zemosaic_xp."))
    return found


def _layer(path: pathlib.Path) -> str:
    first = path.relative_to(ROOT).parts[0]
    return first.removesuffix(".py")


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_layers(path):
    layer = _layer(path)
    allowed = ALLOWED_MODULES.get(path.relative_to(ROOT).as_posix(), ALLOWED[layer])
    if allowed is None:
        return
    upward = _imports(path) - allowed - {layer}
    assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)}; see docs/architecture.md"


def test_nothing_below_the_top_imports_the_worker_entries():
    entries = {"grid_entry", "phase3"}
    users = []
    for path in ROOT.rglob("*.py"):
        if _layer(path) == "cli" or path.relative_to(ROOT).as_posix() in ALLOWED_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[-1] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        names |= {(n.module or "").split(".")[-1] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        if names & entries:
            users.append(path.relative_to(ROOT).as_posix())
    assert users == ["compat/zemosaic.py"]  # its lazy __getattr__ (compat.zemosaic.run_grid_mode)


def test_core_imports_compat_only_for_zemosaic_keys():
    users = [p.relative_to(ROOT).as_posix() for p in (ROOT / "core").rglob("*.py") if "compat" in _imports(p)]
    assert users == ["core/config.py"]


def test_only_backends_import_gpu_and_jit_libraries():
    pattern = re.compile(r"^\s*(import|from)\s+(cupy|torch|numba)\b", re.MULTILINE)
    offenders = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py")
                 if pattern.search(p.read_text(encoding="utf-8")) and _layer(p) != "backends"]
    assert offenders == []


@pytest.mark.parametrize(("definition", "home"), [
    (r"^class GpuPolicy\b", "gpu/policy.py"),
    (r"^def check_health\b", "backends/health.py"),
    (r"^class FaultInjector\b", "gpu/testing.py"),
    (r"^def stack_bands\b", "core/band_driver.py"),
    (r"^def mad_sorted\b", "core/sorted_rows.py"),
    (r"^def centred_prefix_sums\b", "core/sorted_rows.py"),
    (r"^def load_config_file\b", "compat/zemosaic.py"),
    (r"^def solve_graph\b", "mosaic/robust.py"),
    (r"^MAD_TO_SIGMA\b", "core/nanstats.py"),
    (r"^def cosmic_mask\b", "io/cosmic.py"),
])
def test_one_home_per_concept(definition, home):
    pattern = re.compile(definition, re.MULTILINE)
    homes = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py")
             if pattern.search(p.read_text(encoding="utf-8"))]
    assert homes == [home]


def test_no_numeric_mad_literal_outside_nanstats():
    # Number tokens only: prose in docstrings may say "1.4826 · MAD".
    offenders = []
    for path in ROOT.rglob("*.py"):
        with path.open("rb") as fh:
            numbers = [t.string for t in tokenize.tokenize(fh.readline) if t.type == tokenize.NUMBER]
        if path.name != "nanstats.py" and any(n.startswith("1.4826") for n in numbers):
            offenders.append(path.relative_to(ROOT).as_posix())
    assert offenders == []


def test_importing_the_package_loads_no_astropy_torch_or_cupy():
    import subprocess
    import sys

    code = ("import sys, zemosaic_xp as zx; zx.stack; zx.StackConfig; "
            "print(sorted(m for m in ('astropy', 'torch', 'cupy', 'numba') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

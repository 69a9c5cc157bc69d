#!/usr/bin/env bash
# GPU check (issue 13, item 6): one command for a machine with CUDA (CuPy and/or torch with CUDA).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]                   # default OUT_DIR: gpu_check_out/
#   GPU_CHECK_QUICK=1 bash benchmarks/gpu_check.sh [OUT_DIR] # ~2 minutes: smaller frames, one run each
#
# 1. prints nvidia-smi (when present), the library versions and which GPU backends can run;
# 2. runs the GPU tests: pytest -v --benchmark-disable tests -k "cupy or cuda or gpu" (the backend
#    fixture of tests/conftest.py parametrises cupy and torch:cuda and skips them without a device;
#    every test's line in OUT_DIR/pytest.log, the failed ones in the summary);
# 3. runs benchmarks/gpu_bench.py on numpy, cupy and torch:cuda (input on the host, already on the
#    device, and from uint16 FITS files: M frame-px/s, ratio to NumPy, peak device memory, parity);
# 4. runs the whole-process peer benchmark (benchmarks/peers.py, 32x1024, kappa_sigma and median)
#    with --backend cupy and --backend torch:cuda (without siril-cli on PATH: ours alone, with
#    --backend numpy too, so that GPU and CPU compare end to end on the same machine);
# 5. prints the tables (also in OUT_DIR/summary.md).
#
# GPU_CHECK_PEER_BACKENDS="numpy" runs the peer step on other backends (a dry run without a GPU).
# OUT_DIR receives summary.md, run.log (everything printed), pytest.log, gpu_bench.json and one
# peers_<backend>.json per peer run; the frames go to ${TMPDIR:-/tmp}/zemosaic_gpu_check.
# Each step runs under a time limit (tests 210 s, benchmark 210 s, each peer run 45 s; quick mode
# 90 / 45 / 25 s), so a hung device cannot hold the machine and the whole ends within ~9 minutes. Installs nothing: the package's dependencies and its
# test extras must be importable (pip install -e ".[test,gpu]"); PYTHON picks the interpreter.
# Never run by CI (.ci/run does not call it; the tests only check its syntax with bash -n).
#
# Exit status: 0 done; 1 the GPU tests failed (or ran out of time); 2 a dependency is missing;
# 3 the tests passed but a benchmark run failed; 4 no GPU backend could run here (nothing on a
# GPU was checked).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-gpu_check_out}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
WORK=${TMPDIR:-/tmp}/zemosaic_gpu_check
QUICK=${GPU_CHECK_QUICK:-0}
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$WORK"
LOG=$OUT/run.log
SUMMARY=$OUT/summary.md
: >"$LOG"

# Time limits of the steps, seconds (GPU_CHECK_LIMITS="tests bench peers" overrides them).
if [ "$QUICK" = 1 ]; then
    read -r T_TESTS T_BENCH T_PEERS <<<"${GPU_CHECK_LIMITS:-90 45 25}"
    BENCH_ARGS=(--shape 16x512x512 --repeat 1)
    PEERS_REPEAT=1
else
    read -r T_TESTS T_BENCH T_PEERS <<<"${GPU_CHECK_LIMITS:-210 210 45}"
    BENCH_ARGS=(--shape 32x1024x1024 --repeat 3)
    PEERS_REPEAT=3
fi

say() { printf '%s\n' "$*" | tee -a "$LOG"; }
step() { say ""; say "=== $* ($(date +%H:%M:%S))"; }

# ---------------------------------------------------------------------------------------------
step "environment"
{
    echo "# GPU check: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), host $(uname -srm)," \
         "quick mode: $QUICK"
    echo
    echo '```'
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi 2>&1 | head -n 30
    else
        echo "nvidia-smi: not found"
    fi
    echo '```'
} >"$SUMMARY"
cat "$SUMMARY" | tee -a "$LOG"

MISSING=$("$PY" - <<'EOF' 2>&1
import importlib
need = ["numpy", "array_api_compat", "array_api_extra", "astropy", "scipy", "psutil", "reproject", "shapely",
        "pytest", "pytest_benchmark", "array_api_strict", "zemosaic_xp"]
missing = []
for name in need:
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001
        missing.append(f"{name} ({type(exc).__name__}: {exc})")
print("; ".join(missing))
EOF
)
if [ -n "$MISSING" ]; then
    say "missing Python packages for $PY: $MISSING"
    say "install the package with its test extras first (pip install -e \".[test,gpu]\", or wheels)."
    exit 2
fi

VERSIONS=$("$PY" - <<'EOF' 2>&1
import importlib
import platform

import numpy as np

import zemosaic_xp
from zemosaic_xp.backends import BackendUnavailable, select_backend

print(f"- Python {platform.python_version()}, NumPy {np.__version__}, zemosaic-xp {zemosaic_xp.__version__}")
for name in ("numba", "astropy"):
    try:
        print(f"- {name} {importlib.import_module(name).__version__}")
    except Exception as exc:  # noqa: BLE001
        print(f"- {name}: not importable ({type(exc).__name__})")
try:
    import cupy
    rt = cupy.cuda.runtime
    print(f"- CuPy {cupy.__version__} (CUDA runtime {rt.runtimeGetVersion()}, driver {rt.driverGetVersion()})")
except Exception as exc:  # noqa: BLE001
    print(f"- CuPy: not importable or no CUDA ({type(exc).__name__}: {exc})")
try:
    import torch
    print(f"- torch {torch.__version__} (CUDA {torch.version.cuda}, available: {torch.cuda.is_available()})")
except Exception as exc:  # noqa: BLE001
    print(f"- torch: not importable ({type(exc).__name__}: {exc})")
for name in ("cupy", "torch:cuda"):
    try:
        select_backend(name)
        print(f"- backend {name}: usable")
    except BackendUnavailable as exc:
        print(f"- backend {name}: not usable here: {exc}")
EOF
)
printf '\n%s\n' "$VERSIONS" >>"$SUMMARY"
say "$VERSIONS"
GPU_BACKENDS=()
for b in cupy torch:cuda; do
    if grep -q -- "- backend $b: usable" <<<"$VERSIONS"; then GPU_BACKENDS+=("$b"); fi
done
[ ${#GPU_BACKENDS[@]} -gt 0 ] || say "WARNING: no GPU backend can run here; the GPU tests will skip and only NumPy is measured."
# The peer benchmark's backends: the usable GPU ones, unless GPU_CHECK_PEER_BACKENDS names others
# (e.g. "numpy", to try the script on a machine without a GPU).
read -r -a PEER_BACKENDS <<<"${GPU_CHECK_PEER_BACKENDS:-${GPU_BACKENDS[*]}}"

# ---------------------------------------------------------------------------------------------
step "GPU tests (limit ${T_TESTS} s)"
# One line per test in OUT_DIR/pytest.log (-v), so that a run stopped at its limit still
# names what passed and what failed; the failures' tracebacks follow at the end (-rfE).
PYTEST_LOG=$OUT/pytest.log
timeout --kill-after=10 "$T_TESTS" "$PY" -m pytest -v -rfE --tb=short --durations=15 --benchmark-disable -p no:cacheprovider \
    tests -k "cupy or cuda or gpu" >"$PYTEST_LOG" 2>&1
TESTS_RC=$?
TESTS_LINE=$(grep -E '(passed|failed|error|skipped|deselected).* in [0-9.]+s' "$PYTEST_LOG" | tail -n 1)
N_PASSED=$(grep -cE '::[^ ]+ PASSED' "$PYTEST_LOG")
N_FAILED=$(grep -cE '::[^ ]+ (FAILED|ERROR)' "$PYTEST_LOG")
N_SKIPPED=$(grep -cE '::[^ ]+ SKIPPED' "$PYTEST_LOG")
if [ "$TESTS_RC" = 124 ] || [ "$TESTS_RC" = 137 ]; then
    TESTS_LINE="ran out of its ${T_TESTS} s limit after $N_PASSED passed, $N_FAILED failed, $N_SKIPPED skipped"
fi
FAILED_TESTS=$(grep -oE '^[^ ]+::[^ ]+ (FAILED|ERROR)' "$PYTEST_LOG" | sed 's/ FAILED$//; s/ ERROR$/ (error)/')
say "pytest: ${TESTS_LINE:-no summary line} (exit $TESTS_RC; every test in $PYTEST_LOG)"
[ -z "$FAILED_TESTS" ] || say "failed:" "$FAILED_TESTS"
{
    echo
    echo "## GPU tests"
    echo
    echo "\`pytest -v --benchmark-disable tests -k \"cupy or cuda or gpu\"\`: ${TESTS_LINE:-no summary line} (exit $TESTS_RC)"
    if [ -n "$FAILED_TESTS" ]; then
        echo
        echo "Failed:"
        echo
        sed 's/^/- /' <<<"$FAILED_TESTS"
    fi
} >>"$SUMMARY"

# ---------------------------------------------------------------------------------------------
step "GPU benchmark (limit ${T_BENCH} s)"
BENCH_MD=$WORK/gpu_bench.md
rm -f "$BENCH_MD"
timeout --kill-after=10 "$T_BENCH" "$PY" benchmarks/gpu_bench.py --backends numpy,cupy,torch:cuda "${BENCH_ARGS[@]}" \
    --workdir "$WORK/bench" --json "$OUT/gpu_bench.json" -o "$BENCH_MD" 2>&1 | tee -a "$LOG"
BENCH_RC=${PIPESTATUS[0]}
{
    echo
    echo "## In-process benchmark (benchmarks/gpu_bench.py ${BENCH_ARGS[*]}; exit $BENCH_RC)"
    echo
    if [ -s "$BENCH_MD" ]; then cat "$BENCH_MD"; else echo "no table: the benchmark failed or ran out of time (run.log)"; fi
} >>"$SUMMARY"

# ---------------------------------------------------------------------------------------------
PEERS_RC=0
{
    echo
    echo "## Whole-process peer benchmark (benchmarks/peers.py --cases 32x1024 --rejections kappa_sigma,median)"
    echo
} >>"$SUMMARY"
if ! command -v siril-cli >/dev/null 2>&1; then
    # Without Siril the same whole-process runs still compare each GPU backend with our
    # NumPy path on this machine (FITS files in, FITS file out).
    say "siril-cli not found: the peer benchmark runs ours alone, NumPy and the GPU backends" \
        "(apt-get install siril, or see https://siril.org/download/, adds Siril)"
    echo "siril-cli not found on this machine: ours alone, \`--backend numpy\` and each GPU backend." >>"$SUMMARY"
    PEER_BACKENDS=(numpy "${PEER_BACKENDS[@]}")
fi
if [ ${#PEER_BACKENDS[@]} -eq 0 ]; then
    step "peer benchmark"
    say "no GPU backend usable: peer benchmark skipped"
    echo "No GPU backend usable: skipped." >>"$SUMMARY"
else
    for b in "${PEER_BACKENDS[@]}"; do
        step "peer benchmark --backend $b (limit ${T_PEERS} s)"
        PEERS_MD=$WORK/peers_${b//:/_}.md
        rm -f "$PEERS_MD"
        timeout --kill-after=10 "$T_PEERS" "$PY" benchmarks/peers.py --cases 32x1024 --rejections kappa_sigma,median \
            --repeat "$PEERS_REPEAT" --backend "$b" --workdir "$WORK/peers" \
            --json "$OUT/peers_${b//:/_}.json" -o "$PEERS_MD" 2>&1 | tee -a "$LOG"
        rc=${PIPESTATUS[0]}
        [ "$rc" = 0 ] || PEERS_RC=$rc
        {
            echo "### --backend $b (exit $rc)"
            echo
            if [ -s "$PEERS_MD" ]; then cat "$PEERS_MD"; else echo "no table: the run failed or ran out of time (run.log)"; fi
            echo
        } >>"$SUMMARY"
    done
fi

# ---------------------------------------------------------------------------------------------
step "summary ($SUMMARY)"
cat "$SUMMARY"
if [ "$TESTS_RC" != 0 ]; then
    say "GPU check: the GPU tests FAILED (exit $TESTS_RC)"
    exit 1
fi
if [ "$BENCH_RC" != 0 ] || [ "$PEERS_RC" != 0 ]; then
    say "GPU check: tests passed, a benchmark run FAILED (gpu_bench exit $BENCH_RC, peers exit $PEERS_RC)"
    exit 3
fi
if [ ${#GPU_BACKENDS[@]} -eq 0 ]; then
    say "GPU check: no GPU backend could run here; nothing on a GPU was checked"
    exit 4
fi
say "GPU check: done (${GPU_BACKENDS[*]})"
exit 0

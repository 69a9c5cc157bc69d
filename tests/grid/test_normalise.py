"""Survey-wide frame normalisation: known gains and offsets recovered from overlaps only."""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_xp import StackConfig
from zemosaic_xp.backends import select_backend
from zemosaic_xp.grid.geometry import build_global_grid
from zemosaic_xp.grid.normalise import normalise_frames
from zemosaic_xp.grid.plan import load_stack_plan
from zemosaic_xp.synthetic import make_survey

from .frames_util import write_frames

XP = select_backend("numpy").xp


def _grid(folder):
    return build_global_grid(load_stack_plan(folder).entries, grid_size_factor=1.0, overlap_fraction=0.2)


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return make_survey(tmp_path_factory.mktemp("survey"), n_frames=12, frame_shape=(128, 128), gain_spread=0.15,
                       offset_spread=60.0, gradient=800.0, seed=4)


def _survey_maps(survey, grid):
    index = {str(p.resolve()): i for i, p in enumerate(survey.frame_paths)}
    order = [index[f.path] for f in grid.frames]
    return survey.gains[order].astype(float), survey.offsets[order].astype(float)


def test_linear_fit_recovers_gains_and_offsets_from_overlaps(survey):
    grid = _grid(survey.folder)
    norm = normalise_frames(grid, StackConfig(), xp=XP)
    g, o = _survey_maps(survey, grid)
    ref = norm.reference
    assert norm.info["pairs"] >= len(grid.frames) and norm.info["unlinked"] == []
    assert norm.gains[ref, 0] == 1.0 and norm.offsets[ref, 0] == 0.0
    # frame k holds g_k·sky + o_k; mapped onto the reference it must read g_ref·sky + o_ref
    np.testing.assert_allclose(norm.gains[:, 0], g[ref] / g, rtol=0.03)  # one frame has a satellite trail
    for sky in (survey.sky_level - 300.0, survey.sky_level, survey.sky_level + 300.0):
        mapped = norm.gains[:, 0] * (g * sky + o) + norm.offsets[:, 0]
        assert np.abs(mapped - (g[ref] * sky + o[ref])).max() < 0.5 * survey.noise_sigma


def test_normalisation_none_reads_nothing(tmp_path):
    write_frames(tmp_path, n=3, shape=(32, 32), rows=1)
    grid = _grid(tmp_path)
    calls = []
    norm = normalise_frames(grid, StackConfig(normalize="none"), xp=XP, mapper=lambda *a: calls.append(a))
    assert calls == [] and np.all(norm.gains == 1) and np.all(norm.offsets == 0)


def test_multiplicative_methods_keep_offsets_at_zero(survey):
    grid = _grid(survey.folder)
    norm = normalise_frames(grid, StackConfig(normalize="multiplicative"), xp=XP)
    assert np.all(norm.offsets == 0) and not np.all(norm.gains == 1)


def test_frames_without_overlap_keep_the_identity(tmp_path):
    # two frames far apart: nothing to compare, so nothing is changed
    write_frames(tmp_path, n=2, shape=(32, 32), rows=1, step_deg=0.05, gains=[1.0, 1.5])
    grid = _grid(tmp_path)
    norm = normalise_frames(grid, StackConfig(), xp=XP)
    assert sorted(norm.info["unlinked"]) == [0, 1] and np.all(norm.gains == 1) and np.all(norm.offsets == 0)


def _pairs_reference(counts: dict, n: int, partners: int) -> list:
    """The pair selection spelled out: each frame's best partners, then Kruskal (largest first)."""
    chosen = set()
    for k in range(n):
        mine = sorted((p for p in counts if k in p), key=lambda p: (-counts[p], p))
        chosen.update(mine[:partners])
    parent = list(range(n))

    def root(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for p in sorted(counts, key=lambda p: (-counts[p], p)):
        ra, rb = root(p[0]), root(p[1])
        if ra != rb:
            parent[ra] = rb
            chosen.add(p)
    return sorted(chosen)


def test_pair_selection_matches_its_definition_with_ties():
    import scipy.sparse as sp

    from zemosaic_xp.grid import normalise

    rng = np.random.default_rng(4)
    for _ in range(60):
        n = int(rng.integers(2, 30))
        all_pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        pick = rng.random(len(all_pairs)) < rng.random()
        pairs = [p for p, keep in zip(all_pairs, pick) if keep]
        counts = {p: int(c) for p, c in zip(pairs, rng.integers(64, 68, len(pairs)))}  # many ties
        i = np.array([p[0] for p in pairs], dtype=np.int64)
        j = np.array([p[1] for p in pairs], dtype=np.int64)
        c = np.array([counts[p] for p in pairs], dtype=np.float32)
        own = np.full(n, 1000.0, dtype=np.float32)  # the diagonal: each frame's own count
        weak = [p for p, keep in zip(all_pairs, pick) if not keep][::2]  # overlaps under MIN_PAIR_SAMPLES
        bi = np.array([p[0] for p in weak], dtype=np.int64)
        bj = np.array([p[1] for p in weak], dtype=np.int64)
        below = np.full(len(weak), 10.0, dtype=np.float32)
        matrix = sp.coo_matrix((np.concatenate([c, c, own, below, below]),
                                (np.concatenate([i, j, np.arange(n), bi, bj]),
                                 np.concatenate([j, i, np.arange(n), bj, bi]))), shape=(n, n)).tocsr()
        got = normalise._select_pairs(matrix, n)
        assert list(got) == _pairs_reference(counts, n, normalise._MAX_PARTNERS)
        assert all(got[p] == counts[p] for p in got)


@pytest.mark.parametrize(("footprint", "width", "height", "step"), [
    ((10.2, 420.7, 5.5, 400.1), 836, 836, 9),    # a frame inside the canvas
    ((-30.0, 50.4, -8.0, 20.6), 100, 60, 7),     # clipped at the canvas's first row and column
    ((90.0, 130.0, 50.0, 70.0), 100, 60, 1),     # clipped at the last ones; every pixel
    ((3.0, 3.4, 2.0, 2.2), 10, 10, 5),           # a single pixel, not a multiple of the step
    ((5.0, 4.0, 0.0, 9.0), 10, 10, 1),           # an empty box
    ((0.0, 1000.0, 0.0, 3.0), 997, 5, 1000),     # a step larger than a row
])
def test_sample_positions_are_the_multiples_of_the_step_in_the_box(footprint, width, height, step):
    # The definition, pixel by pixel: every flat index y·width + x of the box whose
    # bounds are rounded half up (inside the canvas) that is a multiple of the step, ascending.
    import math

    from zemosaic_xp.grid.normalise import _positions_in

    x0, x1, y0, y1 = (math.floor(v + 0.5) for v in footprint)
    want = [y * width + x for y in range(height) for x in range(width)
            if x0 <= x <= x1 and y0 <= y <= y1 and (y * width + x) % step == 0]
    got = _positions_in(footprint, width, height, step)
    assert got.dtype == np.int64
    assert got.tolist() == want


@pytest.mark.parametrize("alpha", [False, True])
def test_samples_do_not_depend_on_the_threads(tmp_path, monkeypatch, alpha):
    # The frames' samples are transformed and interpolated over threads (point_threads):
    # the same values, so the same maps, to the bit.
    from zemosaic_xp.grid import point_threads
    from zemosaic_xp.grid.normalise import sample_frame

    write_frames(tmp_path, n=4, shape=(40, 48), rows=2, channels=3 if alpha else 1, alpha=alpha)
    grid = _grid(tmp_path)
    header, width = grid.header_string(), grid.shape[1]
    positions = np.arange(0, grid.shape[0] * width, 3, dtype=np.int64)
    one = [sample_frame(f.path, header, positions, width) for f in grid.frames]
    base = normalise_frames(grid, StackConfig(), xp=XP)
    monkeypatch.setattr(point_threads, "MIN_POINTS_PER_THREAD", 40)
    for frame, expected in zip(grid.frames, one):
        got = sample_frame(frame.path, header, positions, width, threads=3)
        np.testing.assert_array_equal(got, expected)
    assert any(np.isnan(v).any() and np.isfinite(v).any() for v in one)
    threaded = normalise_frames(grid, StackConfig(), xp=XP, threads=3)
    np.testing.assert_array_equal(threaded.gains, base.gains)
    np.testing.assert_array_equal(threaded.offsets, base.offsets)


def test_common_positions_match_intersect1d():
    from zemosaic_xp.grid.normalise import _matches

    rng = np.random.default_rng(11)
    cases = [(np.arange(0, 50, 3), np.arange(20, 90, 3)), (np.arange(5), np.arange(10, 20)),
             (np.arange(10, 20), np.arange(5)), (np.zeros(0, dtype=np.int64), np.arange(4)),
             (np.arange(4), np.zeros(0, dtype=np.int64)), (np.array([7]), np.array([7])),
             (np.arange(100), np.arange(100))]
    for _ in range(30):
        cases.append(tuple(np.unique(rng.integers(0, 400, int(rng.integers(1, 200)))) for _ in range(2)))
    for pi, pj in cases:
        _, ei, ej = np.intersect1d(pi, pj, assume_unique=True, return_indices=True)
        ai, aj = _matches(pi, pj)
        np.testing.assert_array_equal(ai, ei)
        np.testing.assert_array_equal(aj, ej)

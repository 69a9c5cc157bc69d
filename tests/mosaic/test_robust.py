"""The shared robust statistics of overlaps (mosaic/robust.py): clipped mean and graph solve."""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_xp.mosaic.robust import clipped_mean, solve_graph


class TestClippedMean:
    def test_known_answer_drops_the_outlier(self):
        # Ten samples at 99 and ten at 101 average to exactly 100 (std 1); the 5000 ADU hit goes:
        # median 101, MAD 2 → keep |d − 101| <= 3·1.4826·2; then median 100, MAD 1: same set.
        values = np.array([99.0, 101.0] * 10 + [5000.0])
        assert clipped_mean(values) == (100.0, 1.0, 20)

    def test_identical_values_are_all_kept(self):
        assert clipped_mean(np.full(7, -3.5)) == (-3.5, 0.0, 7)

    def test_one_value(self):
        assert clipped_mean(np.array([2.0])) == (2.0, 0.0, 1)

    def test_kappa_and_max_iters(self):
        # One round on Gaussian noise keeps |d| <= κσ: 68 % at κ = 1, 99.7 % at κ = 3.
        values = np.random.default_rng(0).normal(0.0, 1.0, 20000)
        assert 0.66 < clipped_mean(values, kappa=1.0, max_iters=1)[2] / values.size < 0.70
        assert 0.996 < clipped_mean(values, max_iters=1)[2] / values.size < 0.998


def _triangle(outlier: float = 0.0):
    """Nodes 0, 1, 2 with x = (0, 5, −3): three measurements of each difference, all exact
    except the last of x_1 − x_2, which is off by ``outlier``."""
    truth = np.array([0.0, 5.0, -3.0])
    edges = np.array([[1, 0]] * 3 + [[2, 0]] * 3 + [[1, 2]] * 3)
    values = truth[edges[:, 0]] - truth[edges[:, 1]]
    values[-1] += outlier
    return truth, edges, values


class TestSolveGraph:
    def test_consistent_graph_is_solved_exactly(self):
        truth, edges, values = _triangle()
        x, iterations, huber = solve_graph(edges, values, np.ones(len(values)), n_nodes=3, fixed=[0])
        np.testing.assert_allclose(x, truth, atol=1e-9)
        assert x[0] == 0.0 and np.all(huber == 1.0) and iterations <= 3

    @pytest.mark.parametrize("standardize", [True, False])
    def test_known_answer_with_one_outlier_pair(self, standardize):
        # Least squares alone would move x_1 and x_2 by ~100/9 each; Huber re-weighting
        # shrinks the bad measurement's weight until the exact ones decide.
        truth, edges, values = _triangle(outlier=100.0)
        x, _, huber = solve_graph(edges, values, np.full(len(values), 4.0), n_nodes=3, fixed=[0],
                                  standardize=standardize)
        np.testing.assert_allclose(x, truth, atol=1e-3)
        assert huber[-1] < 1e-3 and np.all(huber[:-1] == 1.0)

    def test_plain_least_squares_without_redundancy(self):
        # A tree: nothing to compare a measurement with, so nothing is downweighted.
        edges = np.array([[1, 0], [2, 1]])
        x, _, huber = solve_graph(edges, np.array([2.0, 3.0]), np.ones(2), n_nodes=3, fixed=[0])
        np.testing.assert_allclose(x, [0.0, 2.0, 5.0], atol=1e-9)
        assert np.all(huber == 1.0)

    def test_one_fixed_node_per_group(self):
        # Two groups, {0, 1} and {2, 3}, each held by its own reference (0 and 3).
        edges = np.array([[1, 0], [2, 3]])
        x, _, _ = solve_graph(edges, np.array([1.5, -4.0]), np.ones(2), n_nodes=4, fixed=[0, 3])
        np.testing.assert_allclose(x, [0.0, 1.5, -4.0, 0.0], atol=1e-9)

    def test_nodes_without_information_stay_at_zero(self):
        # Node 2 hangs on a zero-weight edge only, node 3 on nothing: the ridge keeps them at 0.
        edges = np.array([[1, 0], [2, 0]])
        x, _, _ = solve_graph(edges, np.array([1.0, 7.0]), np.array([1.0, 0.0]), n_nodes=4, fixed=[0])
        np.testing.assert_allclose(x, [0.0, 1.0, 0.0, 0.0], atol=1e-9)

    def test_floor_protects_small_residuals(self):
        truth, edges, values = _triangle(outlier=0.01)
        _, _, huber = solve_graph(edges, values, np.ones(len(values)), n_nodes=3, fixed=[0], floor=0.1)
        assert np.all(huber == 1.0)

    def test_no_edges_or_no_free_node(self):
        x, iterations, huber = solve_graph(np.zeros((0, 2), dtype=np.int64), np.zeros(0), np.zeros(0),
                                           n_nodes=3, fixed=[0])
        assert x.tolist() == [0.0, 0.0, 0.0] and iterations == 0 and huber.size == 0
        x, iterations, _ = solve_graph(np.array([[1, 0]]), np.array([1.0]), np.ones(1), n_nodes=2, fixed=[0, 1])
        assert x.tolist() == [0.0, 0.0] and iterations == 0

    def test_max_iters_caps_the_solves(self):
        _, edges, values = _triangle(outlier=100.0)
        _, iterations, _ = solve_graph(edges, values, np.ones(len(values)), n_nodes=3, fixed=[0], max_iters=2)
        assert iterations == 2


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 1001, 15000])
def test_median_in_place_is_numpys(n):
    from zemosaic_xp.mosaic.robust import _median_in_place

    rng = np.random.default_rng(n)
    for values in (rng.normal(3.0, 2.0, n), rng.integers(-5, 5, n).astype(np.float64),
                   np.float32(rng.normal(0, 1, n)) * np.float32(1e3)):
        want = np.median(values)
        got = _median_in_place(values.copy())
        assert got == float(want) and np.isfinite(got)


def test_clipped_mean_equals_the_np_median_formulation(monkeypatch):
    # The in-place medians change no bit of the clipped mean (reference: np.median).
    import zemosaic_xp.mosaic.robust as robust

    rng = np.random.default_rng(11)
    cases = []
    for n in (1, 2, 5, 64, 999, 15000):
        values = rng.normal(20.0, 3.0, n)
        values[rng.random(n) < 0.05] += rng.uniform(50.0, 500.0)  # stars / cosmic rays
        copy = values.copy()
        cases.append((values, clipped_mean(values)))
        np.testing.assert_array_equal(values, copy)  # the caller's array is not reordered
    monkeypatch.setattr(robust, "_median_in_place", lambda a: float(np.median(a)))
    for values, got in cases:
        assert got == robust.clipped_mean(values)

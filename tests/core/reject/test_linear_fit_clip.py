"""``linear_fit_clip``: a line through the sorted stack (PixInsight / Siril)."""

from __future__ import annotations

import numpy as np
from array_api_compat import numpy as np_xp

from tests.core.reject.stacks import stack_column
from zemosaic_xp import StackConfig
from zemosaic_xp.core.reject import reject
from zemosaic_xp.core.samples import Samples


def test_linear_fit_clip(backend):
    # y = 0..8, 30 against rank 0..9: OLS slope 1770/825 = 2.145, intercept -3.055;
    # mean |residual| = 3.894; the residual of 30 is 13.75 > 3σ = 11.68 -> high.
    # Pass 2: 0..8 is an exact line (no residual) -> converged after 2 iterations.
    image, low, high, cov, r = stack_column(backend, list(range(9)) + [30], reject="linear_fit_clip")
    assert (image, low, high, cov) == (4.0, 0, 1, 9)
    assert r.stats["iterations"] == 2


def _keep_mask(frames, reject_name, **config):
    """Per-pixel keep mask (P, N) straight from the core rejection."""
    n = frames.shape[0]
    x = np.ascontiguousarray(np.moveaxis(frames, 0, -1).reshape(-1, n))
    return reject(Samples(x, None, xp=np_xp), StackConfig.plain(reject=reject_name, **config)).keep


def test_linear_fit_clip_keeps_gradient_tails_that_kappa_sigma_cuts():
    # The Moon rises 60 % into a 24-frame session: from then on every frame carries a
    # sky gradient (a ramp of 200 to 400 ADU across the frame at the last frame) that
    # grows linearly, and it is not normalised away. Each pixel's sorted stack is flat,
    # then a straight ramp: its upper 9 frames are a long but legitimate tail.
    # Median-centred κ-σ at κ = 3 eats 5 of them, frame by frame; the line through the
    # sorted stack explains the ramp and keeps every sample.
    rng = np.random.default_rng(0)
    n, h, w = 24, 16, 16
    level = np.maximum(np.arange(n) / (n - 1) - 0.6, 0.0) / 0.4
    ramp = np.broadcast_to(np.linspace(0.5, 1.0, w), (h, w))
    frames = (1000 + 400 * level[:, None, None] * ramp + rng.normal(0, 2, (n, h, w))).astype(np.float32)
    kappa = _keep_mask(frames, "kappa_sigma")
    linear = _keep_mask(frames, "linear_fit_clip")
    assert not kappa[:, -5:].any()                      # κ-σ drops the 5 brightest frames everywhere
    assert linear.all()                                 # the line keeps the whole tail (and the rest)
    # Same κ, same data: the difference is the model, not the threshold.
    assert StackConfig.plain(reject="kappa_sigma").kappa_high == StackConfig.plain(
        reject="linear_fit_clip").kappa_high == 3.0

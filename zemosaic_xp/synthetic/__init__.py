"""Reproducible synthetic frame stacks with a known truth (tests, benchmarks, demo).

:func:`make_stack` renders a noiseless sky (background gradient + Gaussian stars),
then N frames of it with Poisson-like noise, a per-frame gain and offset, cosmic-ray
hits, satellite trails and optionally one frame with a NaN hole. Everything comes
from one ``seed``; the truth and the positions of every injected outlier are
returned so tests can check that outliers are gone and nothing else was touched.
"""

from .stack import SyntheticStack, make_stack, render_sky
from .survey import SyntheticSurvey, make_survey

__all__ = ["SyntheticStack", "make_stack", "render_sky", "SyntheticSurvey", "make_survey"]

"""Surveys for the grid peer benchmark (``benchmarks/peers_grid.py``): plate-solved FITS with known sky.

A survey spec is ``RxCxE@S``: a pattern of R × C pointings half a frame apart, E
exposures at each, frames of S × S pixels (``R·C·E`` frames; the core of the mosaic is
4·E deep, the edges E deep). Two named specs: ``small`` = ``3x3x4@384`` (36 frames) and
``large`` = ``4x5x5@1024`` (100 frames). The frames are written by
:func:`zemosaic_xp.synthetic.make_survey` (float32 FITS with a TAN CD-matrix WCS, a
``stack_plan.csv``): a linear sky gradient plus Gaussian stars, Poisson-like noise,
per-frame gain 1 ± 3 % and offset ± 20 ADU (frame 0: 1 and 0), cosmic rays (30 per
256² of frame) and one satellite trail.

Beside the frames the survey keeps its truth for the quality metrics
(:mod:`peers_grid_quality`):

- ``truth.npy``: float32 (H, W), the noiseless sky in the units of frame 0, on the
  truth grid (TAN, north up, the frames' pixel scale);
- ``truth_wcs.hdr``: that grid's FITS header (``astropy.io.fits.Header.tostring``);
- ``truth_coverage.npy``: int16 (H, W), frames covering each truth pixel centre;
- ``manifest.json``: the parameters, the per-frame σ (``noise_sigma``), gains and offsets.

A survey is generated once per ``--workdir`` and reused while its manifest holds the same
parameters and :data:`GRID_DATA_VERSION` (bump it when the recipe changes: the data are then
rebuilt); the logic is :func:`outofcore._dataset`'s.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GRID_DATA_VERSION", "NAMED_SURVEYS", "SurveyData", "parse_survey", "prepare_survey"]

#: Version of the recipe below, part of every survey's manifest.
GRID_DATA_VERSION = 1
#: Named survey specs (``--surveys small,large``).
NAMED_SURVEYS = {"small": "3x3x4@384", "large": "4x5x5@1024"}
GAIN_SPREAD = 0.03
OFFSET_SPREAD_ADU = 20.0
COSMIC_RAYS_PER_256SQ = 30
_SPEC = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*[xX×]\s*(\d+)\s*@\s*(\d+)\s*")


@dataclass(frozen=True)
class SurveyData:
    """One generated survey on disk.

    Parameters
    ----------
    name : str
        The spec as given (``"small"``, ``"2x2x3@64"``).
    spec : str
        ``RxCxE@S``.
    grid : (int, int)
        Pointing pattern (rows, cols).
    exposures : int
        Frames per pointing.
    size : int
        Frame side, pixels.
    folder : Path
        Frames ``survey_NNN.fits``, ``stack_plan.csv``, the truth files, ``manifest.json``.
    frames : tuple of Path
        The frame files, in order.
    noise_sigma : float
        Background noise σ of one frame at the sky level (gain-1 units), ADU.
    generation_sec : float
        Seconds spent writing the data this time (0 when reused).
    reused : bool
        True when the data were already there with the same parameters.
    """

    name: str
    spec: str
    grid: tuple[int, int]
    exposures: int
    size: int
    folder: Path
    frames: tuple[Path, ...]
    noise_sigma: float
    generation_sec: float
    reused: bool

    @property
    def n_frames(self) -> int:
        """Number of frames (R·C·E)."""
        return len(self.frames)

    @property
    def input_bytes(self) -> int:
        """Total size of the frame files, bytes."""
        return sum(p.stat().st_size for p in self.frames)


def parse_survey(spec: str) -> tuple[tuple[int, int], int, int]:
    """Read a survey spec: a name of :data:`NAMED_SURVEYS` or ``RxCxE@S``.

    Parameters
    ----------
    spec : str
        E.g. ``"small"``, ``"3x3x4@384"``.

    Returns
    -------
    ((int, int), int, int)
        ``((rows, cols), exposures, size)``.

    Raises
    ------
    ValueError
        Neither a name nor ``RxCxE@S`` with R, C, E ≥ 1, R·C·E ≥ 2 and S ≥ 32.
    """
    text = NAMED_SURVEYS.get(spec.strip(), spec)
    match = _SPEC.fullmatch(text)
    if match is not None:
        rows, cols, exposures, size = (int(g) for g in match.groups())
        if min(rows, cols, exposures) >= 1 and rows * cols * exposures >= 2 and size >= 32:
            return (rows, cols), exposures, size
    msg = (f"`--surveys` entry {spec!r} is neither {' nor '.join(NAMED_SURVEYS)} nor RxCxE@S (R x C pointings, "
           f"E exposures each, S >= 32 px frames, at least 2 frames); e.g. 3x3x4@384")
    raise ValueError(msg)


def prepare_survey(workdir: Path, spec: str, *, seed: int = 14) -> SurveyData:
    """Generate survey ``spec`` under ``workdir``, or reuse it when its manifest matches.

    Parameters
    ----------
    workdir : Path
        The benchmark's working folder; the survey goes to ``workdir/grid_RxCxE@S``.
    spec : str
        See :func:`parse_survey`.
    seed : int
        Seed of the sky, the noise, the pointings and the outliers.

    Returns
    -------
    SurveyData
        The survey on disk.
    """
    from outofcore import _dataset  # sibling script: manifest check, build in a temp folder, rename

    grid, exposures, size = parse_survey(spec)
    canonical = f"{grid[0]}x{grid[1]}x{exposures}@{size}"
    params = {"kind": "peers_grid", "grid": list(grid), "exposures": exposures, "size": size, "seed": seed,
              "gain_spread": GAIN_SPREAD, "offset_spread_adu": OFFSET_SPREAD_ADU,
              "grid_data_version": GRID_DATA_VERSION}
    folder, seconds, reused = _dataset(workdir, f"grid_{canonical}", params,
                                       lambda tmp: generate_survey(tmp, grid, exposures, size, seed=seed))
    manifest = json.loads((folder / "manifest.json").read_text())
    frames = tuple(sorted(folder.glob("survey_*.fits")))
    return SurveyData(spec.strip(), canonical, grid, exposures, size, folder, frames,
                      float(manifest["noise_sigma"]), seconds, reused)


def generate_survey(folder: Path, grid: tuple[int, int], exposures: int, size: int, *, seed: int = 14) -> dict:
    """Write the frames, the plan and the truth of one survey into ``folder``.

    Parameters
    ----------
    folder : Path
        An existing, empty folder.
    grid : (int, int)
        Pointings (rows, cols).
    exposures : int
        Frames per pointing.
    size : int
        Frame side, pixels.
    seed : int
        Seed of everything random.

    Returns
    -------
    dict
        Summary for the manifest: ``noise_sigma``, ``gains``, ``offsets``, ``truth_shape``,
        ``outlier_pixels`` (frame pixels hit by a cosmic ray or the trail).
    """
    import numpy as np

    from zemosaic_xp.synthetic import make_survey

    n_frames = grid[0] * grid[1] * exposures
    survey = make_survey(folder, n_frames=n_frames, frame_shape=(size, size), grid=grid, seed=seed,
                         gain_spread=GAIN_SPREAD, offset_spread=OFFSET_SPREAD_ADU, trails=1,
                         cosmic_rays_per_frame=max(1, round(COSMIC_RAYS_PER_256SQ * size * size / 65536)))
    np.save(folder / "truth.npy", np.asarray(survey.truth, dtype=np.float32))
    np.save(folder / "truth_coverage.npy", survey.coverage.astype(np.int16))
    (folder / "truth_wcs.hdr").write_text(survey.truth_wcs.to_header().tostring())
    return {"noise_sigma": survey.noise_sigma, "gains": survey.gains.tolist(), "offsets": survey.offsets.tolist(),
            "truth_shape": list(survey.truth.shape), "outlier_pixels": int(survey.outliers.sum())}

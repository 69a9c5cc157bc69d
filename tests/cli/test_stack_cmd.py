"""``zemosaic-xp stack``: success writes a readable master tile, errors are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp import StackConfig, stack
from zemosaic_xp.cli import main
from zemosaic_xp.cli.stack_cmd import parse_bytes
from zemosaic_xp.io import read_frame
from zemosaic_xp.synthetic import make_stack

from ..classic.helpers import write_frames


@pytest.fixture(scope="module")
def frames():
    return make_stack(n_frames=6, shape=(20, 16), seed=11, rgb=True, cosmic_rays_per_frame=3).frames


@pytest.fixture
def paths(tmp_path, frames):
    return write_frames(tmp_path / "lights", frames, CTYPE1="RA---TAN", CTYPE2="DEC--TAN",
                        CRVAL1=10.0, CRVAL2=41.0, CRPIX1=8.0, CRPIX2=10.0, CDELT1=-0.001, CDELT2=0.001)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_success_writes_master_with_provenance(tmp_path, paths, frames, capsys):
    out = tmp_path / "master.fits"
    code = main(["stack", *paths, "-o", str(out), "--backend", "numpy", "--reject", "kappa_sigma",
                 "--kappa-low", "2.5", "--memory-budget", "64KB"])
    assert code == 0
    captured = capsys.readouterr()
    assert f"master tile written to {out}" in captured.out
    assert "frames 6 used, 0 skipped" in captured.out and "used_gpu False" in captured.out
    assert "stack" in captured.err and "100.0%" in captured.err  # the progress bar
    with fits.open(out) as hdul:
        hdr = hdul[0].header
        assert hdul[0].data.shape == (3, 20, 16) and "ALPHA" in hdul
    assert hdr["NCOMBINE"] == 6 and hdr["ZMT_REJ"] == "kappa_sigma" and hdr["ZMT_KAPLO"] == 2.5
    assert hdr["ZMT_BACK"] == "numpy" and hdr["ZMT_GPU"] is False and hdr["CTYPE1"] == "RA---TAN"
    ref = stack(frames, config=StackConfig(reject="kappa_sigma", kappa_low=2.5))
    np.testing.assert_array_equal(read_frame(out).data, ref.image)


def test_quiet_hides_the_progress_bar(tmp_path, paths, capsys):
    assert main(["--quiet", "stack", *paths, "-o", str(tmp_path / "m.fits"), "--backend", "numpy"]) == 0
    assert "[" not in capsys.readouterr().err
    assert main(["stack", "--quiet", *paths, "-o", str(tmp_path / "m.fits"), "--backend", "numpy"]) == 0
    assert capsys.readouterr().err == ""


def test_missing_file_is_one_line_naming_it(tmp_path, paths, capsys):
    out = tmp_path / "master.fits"
    code = main(["stack", paths[0], str(tmp_path / "nope_042.fits"), "-o", str(out)])
    assert code != 0
    line = _one_error_line(capsys)
    assert line.startswith("zemosaic-xp: error:") and "nope_042.fits" in line
    assert not out.exists()


def test_corrupt_and_mismatched_files_are_one_line(tmp_path, paths, frames, capsys):
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"\0" * 5000)
    assert main(["stack", paths[0], str(bad), "-o", str(tmp_path / "m.fits")]) != 0
    assert "broken.fits" in _one_error_line(capsys)
    small = write_frames(tmp_path / "small", frames[:1, :10])
    assert main(["stack", paths[0], small[0], "-o", str(tmp_path / "m.fits")]) != 0
    line = _one_error_line(capsys)
    assert "f0000.fits' has frame shape (10, 16, 3); expected (20, 16, 3)" in line


def test_bad_options_are_one_line(tmp_path, paths, capsys):
    assert main(["stack", *paths, "-o", str(tmp_path / "m.fits"), "--memory-budget", "lots"]) != 0
    assert "--memory-budget" in _one_error_line(capsys)
    assert main(["stack", *paths, "-o", str(tmp_path / "m.fits"), "--reject", "magic"]) != 0
    assert "`reject` must be one of" in _one_error_line(capsys)
    assert main(["stack", *paths, "-o", str(tmp_path / "m.fits"), "--config", str(tmp_path / "no.json")]) != 0
    assert "no.json" in _one_error_line(capsys)


def test_zemosaic_config_file_drives_the_stack(tmp_path, paths, capsys):
    cfg = tmp_path / "zemosaic_config.json"
    cfg.write_text(json.dumps({
        "stacking_normalize_method": "none", "stacking_weighting_method": "none",
        "stacking_rejection_algorithm": "kappa_sigma", "stacking_kappa_low": 2.0,
        "stacking_kappa_high": 2.5, "stacking_winsor_limits": "0.1,0.2",
        "stacking_final_combine_method": "median", "use_gpu_phase5": False, "gui_language": "fr",
    }))
    out = tmp_path / "m.fits"
    assert main(["stack", *paths, "-o", str(out), "--config", str(cfg), "--combine", "mean"]) == 0
    hdr = fits.getheader(out)
    assert (hdr["ZMT_NORM"], hdr["ZMT_WGHT"], hdr["ZMT_REJ"], hdr["ZMT_COMB"]) == (
        "none", "none", "kappa_sigma", "mean")  # the command line wins over the file
    assert (hdr["ZMT_KAPLO"], hdr["ZMT_KAPHI"], hdr["ZMT_WINLO"], hdr["ZMT_WINHI"]) == (2.0, 2.5, 0.1, 0.2)
    assert hdr["ZMT_BACK"] == "numpy"  # use_gpu_phase5 = false keeps the GPU off


@pytest.mark.parametrize(("text", "expected"), [("512MB", 512 * 2**20), ("64 MiB", 64 * 2**20),
                                                ("1.5G", int(1.5 * 2**30)), ("2048", 2048), ("8kb", 8192)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "-5MB", "0", "3 parsecs"])
def test_parse_bytes_rejects(text):
    with pytest.raises(ValueError, match="--memory-budget"):
        parse_bytes(text)


# -- issue 15: the output is one of the inputs (case 2), repeated inputs (case 10)

@pytest.mark.parametrize("spelling", ["same", "relative", "symlink", "hardlink"])
def test_output_that_is_an_input_is_refused_and_left_untouched(tmp_path, paths, capsys, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    target = paths[1]
    output = {"same": target, "relative": f"./lights/../lights/{tmp_path.joinpath(target).name}"}.get(spelling)
    if spelling == "symlink":
        output = str(tmp_path / "link.fits")
        (tmp_path / "link.fits").symlink_to(target)
    elif spelling == "hardlink":
        output = str(tmp_path / "hard.fits")
        (tmp_path / "hard.fits").hardlink_to(target)
    before = (tmp_path / target).read_bytes()
    code = main(["--quiet", "stack", *paths, "-o", output, "--backend", "numpy"])
    assert code == 2
    assert _one_error_line(capsys) == (f"zemosaic-xp: error: -o/--output '{output}' is the input frame '{target}': "
                                       f"writing the master tile would overwrite it; choose another output name")
    assert (tmp_path / target).read_bytes() == before


def test_repeated_inputs_are_stacked_once(tmp_path, paths, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)
    once, twice = tmp_path / "once.fits", tmp_path / "twice.fits"
    assert main(["--quiet", "stack", *paths, "-o", str(once), "--backend", "numpy"]) == 0
    relative = str(tmp_path.joinpath(paths[0]).relative_to(tmp_path))
    with caplog.at_level("WARNING", logger="zemosaic_xp.io"):
        assert main(["--quiet", "stack", *paths, f"./{relative}", paths[2], "-o", str(twice),
                     "--backend", "numpy"]) == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"[P3] the inputs list 2 frame(s) more than once; each is stacked once: '{paths[0]}' (inputs 0, 6: "
        f"'{paths[0]}', './{relative}'); '{paths[2]}' (inputs 2, 7)"]
    with fits.open(once) as a, fits.open(twice) as b:
        assert b[0].header["NCOMBINE"] == a[0].header["NCOMBINE"] == 6
        np.testing.assert_array_equal(a[0].data, b[0].data)
        np.testing.assert_array_equal(a["ALPHA"].data, b["ALPHA"].data)


def test_cosmic_option_masks_the_hits_like_stack(tmp_path, paths, frames, capsys):
    # Issue 17: --cosmic always sets StackConfig.cosmic; the master equals stack() with it.
    out = tmp_path / "master.fits"
    assert main(["--quiet", "stack", *paths[:3], "-o", str(out), "--backend", "numpy", "--cosmic", "always"]) == 0
    ref = stack(frames[:3], config=StackConfig(cosmic="always"))
    assert ref.stats["cosmic_masked_px"] > 0
    np.testing.assert_array_equal(read_frame(out).data, ref.image)
    with pytest.raises(SystemExit):  # argparse lists the choices
        main(["stack", *paths, "-o", str(out), "--cosmic", "sometimes"])


def test_camera_frames_without_wcs_are_stacked_without_astropy(tmp_path):
    # Issue 13: FITS -> FITS reads with the fast header reader and writes with the minimal
    # writer; astropy (~0.2 s of start-up) is imported only when a frame needs it.
    import subprocess
    import sys

    rng = np.random.default_rng(2)
    frames = rng.integers(0, 65535, (4, 12, 10)).astype(np.uint16)
    paths = []
    for i, frame in enumerate(frames):  # uint16 as cameras write it: BITPIX 16, BZERO 32768
        hdu = fits.PrimaryHDU((frame.astype(np.int32) - 32768).astype(np.int16))
        hdu.header["BZERO"], hdu.header["EXPTIME"] = 32768, 30.0
        hdu.writeto(tmp_path / f"c{i}.fits")
        paths.append(str(tmp_path / f"c{i}.fits"))
    out = tmp_path / "master.fits"
    code = ("import sys; from zemosaic_xp.cli import main; "
            f"code = main(['stack', *{paths!r}, '-o', {str(out)!r}, '--backend', 'numpy', '--quiet']); "
            "print(code, 'astropy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "0 False", done.stderr
    ref = stack(frames.astype(np.float32), config=StackConfig())
    np.testing.assert_array_equal(read_frame(out).data[..., 0], ref.image)
    assert fits.getheader(out)["EXPTOTAL"] == 120.0

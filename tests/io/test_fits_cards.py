"""The minimal FITS writer (issue 13): the bytes astropy writes, without importing astropy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp.io.fits_cards import Cards, ImageExtension, render_card, render_header
from zemosaic_xp.io.fits_write import uncertainty_extension, uncertainty_hdu, write_fits

SIMPLE_CARDS = [
    ("NCOMBINE", 32, "frames stacked"),
    ("ZMT_TYPE", "Master Tile", "zemosaic_xp master tile"),
    ("ZMT_NORM", "none", "normalisation method"),
    ("QUOTE", "it's", ""),
    ("EMPTY", "", "an empty string"),
    ("ZMT_GPU", False, "stacked on a GPU"),
    ("FLAG", True, ""),
    ("BIGINT", np.int64(-2**40), "numpy integer"),
    ("F1", 3.0, "kappa"),
    ("F2", 0.1 + 0.2, "17 digits"),
    ("F3", 1.5e-12, "small"),
    ("F4", -6.02e23, "large"),
    ("F5", np.float32(0.1), "float32"),
    ("F6", np.float64(1234567.891), ""),
    ("HIERARCH ZMT_KAPLO", 2.5, "kappa low"),
    ("HIERARCH ZMT_A_VERY_LONG_KEYWORD_NAME", "value", "comment"),
    ("HIERARCH ZMT_REJECTION_ALGORITHM_NAME_X", "kappa_sigma_clip_long", ""),  # 81 chars with the blank
    ("DATE", "2026-12-02T14:35:37", "UTC file date"),
    ("LONGCOMM", 1, "x" * 47),  # exactly 80 characters
]


@pytest.mark.parametrize("card", SIMPLE_CARDS, ids=[c[0] for c in SIMPLE_CARDS])
def test_a_simple_card_is_the_one_astropy_formats(card):
    ours = render_card(*card)
    assert ours is not None and len(ours) == 80
    assert ours == fits.Card(*card).image


@pytest.mark.parametrize("card", [
    ("LONGSTR", "y" * 80, ""),  # needs CONTINUE
    ("NAN", float("nan"), ""),
    ("INF", float("inf"), ""),
    ("lower", 1, ""),
    ("TOOLONGKEY", 1, ""),  # more than 8 characters without HIERARCH
    ("UNICODE", "é", ""),
    ("CMT", 1, "é"),
    ("NONE", None, ""),
    ("CPLX", 1 + 2j, ""),
    ("LONGCOMM", 1, "x" * 48),  # astropy would truncate the comment
])
def test_other_cards_are_left_to_astropy(card):
    assert render_card(*card) is None


def test_structural_keys_among_the_cards_are_left_to_astropy():
    data = np.zeros((2, 2), np.float32)
    assert render_header(data, [("NAXIS", 2, "")]) is None
    assert render_header(data, [("COMMENT", "a note", "")]) is None
    assert render_header(np.zeros((2, 2), np.complex64), []) is None


def _astropy_bytes(tmp_path, image, header, alpha=None, extra=()):
    """The file the astropy path writes (an astropy header selects it)."""
    path = tmp_path / "astropy.fits"
    hdr = fits.Header() if header is None else header.to_astropy()
    write_fits(path, image, header=hdr, alpha=alpha, extra_hdus=[e.to_astropy() for e in extra])
    return path.read_bytes()


@pytest.mark.parametrize("shape", [(7, 5), (6, 5, 3), (4, 3, 1)])
@pytest.mark.parametrize("with_alpha", [None, "float", "uint8"])
def test_the_file_is_the_one_astropy_writes(tmp_path, shape, with_alpha):
    rng = np.random.default_rng(3)
    image = rng.normal(size=shape).astype(np.float32)
    image.flat[2] = np.nan
    alpha = {None: None, "float": rng.random(shape[:2]), "uint8": rng.integers(0, 256, shape[:2], np.uint8)}[with_alpha]
    header = Cards(SIMPLE_CARDS)
    extra = [uncertainty_extension(np.abs(image), unit="adu"),
             ImageExtension("WEIGHT", rng.random(shape[:2]).astype(np.float32), Cards([("WHAT", "weights", "")]))]
    ours = write_fits(tmp_path / "ours.fits", image, header=header, alpha=alpha, extra_hdus=extra).read_bytes()
    assert ours == _astropy_bytes(tmp_path, image, header, alpha, extra)
    with fits.open(tmp_path / "ours.fits") as hdul:
        chw = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
        chw = np.moveaxis(chw, -1, 0) if chw.ndim == 3 else chw
        np.testing.assert_array_equal(hdul[0].data, chw)
        assert hdul[0].header["HIERARCH ZMT_KAPLO"] == 2.5 and hdul[0].header["QUOTE"] == "it's"
        assert hdul["UNCERT"].header["UTYPE"] == "StdDevUncertainty" and hdul["UNCERT"].header["BUNIT"] == "adu"


def test_no_header_and_a_one_pixel_image(tmp_path):
    image = np.array([[1.5]], np.float32)
    assert write_fits(tmp_path / "o.fits", image).read_bytes() == _astropy_bytes(tmp_path, image, None)


def test_a_card_the_writer_does_not_handle_goes_through_astropy(tmp_path):
    header = Cards([("LONGSTR", "z" * 100, "needs CONTINUE"), ("COMMENT", "first", ""), ("COMMENT", "second", ""),
                    ("BZERO", 32768, "")])  # BZERO is dropped, as from an astropy header
    path = write_fits(tmp_path / "o.fits", np.ones((3, 4), np.float32), header=header)
    with fits.open(path) as hdul:
        assert hdul[0].header["LONGSTR"] == "z" * 100 and list(hdul[0].header["COMMENT"]) == ["first", "second"]
        assert "BZERO" not in hdul[0].header
        np.testing.assert_array_equal(hdul[0].data, np.ones((3, 4), np.float32))


def test_cards_replace_in_place_like_an_astropy_header():
    cards = Cards([("A", 1, "first"), ("HIERARCH LONG_NAME", 2.0, "x")])
    cards["A"] = 5  # keeps its comment
    cards["LONG_NAME"] = (3.0, "y")  # the same card as HIERARCH LONG_NAME
    cards.set("B", "b")
    assert cards.cards() == [("A", 5, "first"), ("HIERARCH LONG_NAME", 3.0, "y"), ("B", "b", "")]
    assert cards.get("HIERARCH LONG_NAME") == 3.0 and "B" in cards and len(cards) == 3
    cards.remove("A")
    assert cards.get("A", "gone") == "gone"


def test_uncertainty_hdu_is_unchanged():
    hdu = uncertainty_hdu(np.ones((2, 3, 3), np.float32), unit="electron")
    assert hdu.name == "UNCERT" and hdu.header["UTYPE"] == "StdDevUncertainty" and hdu.header["BUNIT"] == "electron"
    assert hdu.data.shape == (3, 2, 3)


def test_writing_a_tile_imports_no_astropy(tmp_path):
    code = ("import sys, numpy as np\n"
            "from zemosaic_xp.io.fits_cards import Cards\n"
            "from zemosaic_xp.io.fits_write import uncertainty_extension, write_fits\n"
            f"write_fits({str(tmp_path / 't.fits')!r}, np.ones((4, 4, 3), np.float32), header=Cards([('A', 1, '')]),\n"
            "           alpha=np.ones((4, 4)), extra_hdus=[uncertainty_extension(np.ones((4, 4, 3)))])\n"
            "print('astropy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    with fits.open(tmp_path / "t.fits") as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "ALPHA", "UNCERT"]


@pytest.mark.parametrize("with_wcs", [False, True])
def test_a_master_tile_has_the_header_astropy_built(tmp_path, with_wcs):
    # write_master_tile's cards (now without astropy) against the astropy Header the
    # earlier code built: user cards, then the WCS, then the provenance, then BUNIT.
    from astropy.wcs import WCS

    from zemosaic_xp.classic.master_tile import MasterTileResult, _card_key, provenance_header, write_master_tile

    rng = np.random.default_rng(5)
    image = rng.normal(size=(6, 5, 3)).astype(np.float32)
    stats = {"n_frames": 7, "skipped_frames": ["x.fits"], "normalize": "none", "weighting": "none",
             "reject": "kappa_sigma", "combine": "mean", "kappa_low": 2.5, "kappa_high": 3.0, "rejected_pct": 0.123456,
             "backend": "numpy", "config": {"winsor_limits": [0.05, 0.1]}, "exposure_total_sec": 420.0, "tile_id": 3}
    result = MasterTileResult(image, np.full((6, 5), 255, np.uint8), stats, False, None, np.abs(image), "adu")
    user = {"OBJECT": "M31", "TELESCOP": ("RC8", "the scope"), "AVERYLONGKEY": 1.5, "NCOMBINE": 99}
    wcs = None
    if with_wcs:
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [10.684708, 41.26875]
        wcs.wcs.crpix = [3.0, 2.5]
        wcs.wcs.cdelt = [-0.001, 0.001]
    path = write_master_tile(result, tmp_path / "tile.fits", wcs=wcs, header=user)
    want = fits.Header()
    for key, value in user.items():
        want[_card_key(key)] = value
    if wcs is not None:
        want.update(wcs.to_header(relax=True))
    want.update(provenance_header(result))
    want["BUNIT"] = ("adu", "unit of the frames")
    with fits.open(path) as hdul:
        got = hdul[0].header
        assert [h.name for h in hdul] == ["PRIMARY", "ALPHA", "UNCERT"] and hdul["UNCERT"].header["BUNIT"] == "adu"
        np.testing.assert_array_equal(hdul[0].data, np.moveaxis(image, -1, 0))
    got_cards = [(c.keyword, c.value, c.comment) for c in got.cards][got.index("EXTEND") + 1:]
    want_cards = [(c.keyword, c.value, c.comment) for c in want.cards]
    date = [i for i, c in enumerate(want_cards) if c[0] == "DATE"]
    for i in date:  # written a moment apart
        got_cards[i], want_cards[i] = got_cards[i][::2], want_cards[i][::2]
    assert got_cards == want_cards

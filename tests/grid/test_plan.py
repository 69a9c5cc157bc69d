"""``stack_plan.csv`` parsing: delimiters, aliases, header-less files, foreign paths, mounts."""

from __future__ import annotations

import logging

import pytest

from zemosaic_xp.grid.plan import load_stack_plan, split_by_mount


@pytest.fixture
def folder(tmp_path):
    for name in ("a.fits", "b.fits", "c.fit"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "night1").mkdir()
    (tmp_path / "night1" / "d.fits").write_bytes(b"x")
    return tmp_path


def _write(folder, text):
    (folder / "stack_plan.csv").write_text(text, encoding="utf-8")


@pytest.mark.parametrize("sep", [",", ";", "|", "\t", " "], ids=["comma", "semicolon", "pipe", "tab", "space"])
def test_delimiters_are_sniffed(folder, sep):
    _write(folder, sep.join(["file_path", "exposure"]) + "\n" + f"a.fits{sep}30\n" + f"b.fits{sep}60\n")
    plan = load_stack_plan(folder)
    assert [e.path.name for e in plan.entries] == ["a.fits", "b.fits"]
    assert [e.exposure for e in plan.entries] == [30.0, 60.0]


@pytest.mark.parametrize("column", ["file_path", "filepath", "file", "path", "filename", "fits", "raw"])
def test_path_aliases(folder, column):
    _write(folder, f"{column},exp\na.fits,12.5\n")
    entry = load_stack_plan(folder).entries[0]
    assert entry.path.name == "a.fits" and entry.exposure == 12.5


def test_first_non_empty_alias_wins_and_case_is_ignored(folder):
    _write(folder, "File_Path,PATH,EXPTIME,Batch\n,b.fits,5,n1\na.fits,c.fit,,n2\n")
    entries = load_stack_plan(folder).entries
    assert [e.path.name for e in entries] == ["b.fits", "a.fits"]
    assert [e.exposure for e in entries] == [5.0, 1.0]  # empty exposure -> 1.0
    assert [e.batch_id for e in entries] == ["n1", "n2"]


def test_headerless_plan_takes_first_value_as_path(folder):
    _write(folder, "a.fits,30\n\n  \nb.fits\n")
    plan = load_stack_plan(folder)
    assert [e.path.name for e in plan.entries] == ["a.fits", "b.fits"]
    assert all(e.exposure == 1.0 for e in plan.entries)


@pytest.mark.parametrize("written", [
    r"D:\astro\session\a.fits",          # drive + backslashes: found by name
    "E:/astro/night1/d.fits",            # drive + forward slashes: tail under the folder
    r"\\nas\share\night1\d.fits",        # UNC path
    r"night1\d.fits",                    # relative Windows path
], ids=["drive", "drive-slash", "unc", "relative-backslash"])
def test_windows_paths_resolve_into_the_input_folder(folder, written):
    _write(folder, f"file_path\n{written}\n")
    (entry,) = load_stack_plan(folder).entries
    assert entry.path.parent in (folder.resolve(), (folder / "night1").resolve())
    assert entry.path.name == written.replace("\\", "/").split("/")[-1]


def test_absolute_and_relative_paths(folder):
    _write(folder, f"path\n{folder / 'a.fits'}\nnight1/d.fits\n")
    assert [e.path.name for e in load_stack_plan(folder).entries] == ["a.fits", "d.fits"]


def test_missing_files_are_skipped_with_a_warning(folder, caplog):
    _write(folder, "file_path\na.fits\nnope.fits\n")
    with caplog.at_level(logging.WARNING, logger="zemosaic_xp.grid"):
        plan = load_stack_plan(folder)
    assert [e.path.name for e in plan.entries] == ["a.fits"]
    assert plan.missing == ["nope.fits"]
    assert any("nope.fits" in r.getMessage() and "[GRID]" in r.getMessage() for r in caplog.records)


def test_utf8_bom_and_bad_exposure(folder, caplog):
    (folder / "stack_plan.csv").write_bytes("\ufefffile_path,exposure\na.fits,abc\nb.fits,-3\n".encode())
    with caplog.at_level(logging.WARNING):
        entries = load_stack_plan(folder).entries
    assert [e.exposure for e in entries] == [1.0, 1.0]


def test_no_plan_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="stack_plan.csv"):
        load_stack_plan(tmp_path)


def test_mount_split_needs_every_row_and_two_kinds(folder):
    _write(folder, "file_path,mount\na.fits,EQ\nb.fits,alt-az\nc.fit,German\nnight1/d.fits,ALTAZ\n")
    groups = split_by_mount(load_stack_plan(folder))
    assert {k: [e.path.name for e in v] for k, v in groups.items()} == {
        "EQ": ["a.fits", "c.fit"], "ALTZ": ["b.fits", "d.fits"]}
    _write(folder, "file_path,mount\na.fits,EQ\nb.fits,\n")
    assert list(split_by_mount(load_stack_plan(folder))) == [None]
    _write(folder, "file_path,eqmode\na.fits,EQ\nb.fits,equatorial\n")
    assert list(split_by_mount(load_stack_plan(folder))) == [None]

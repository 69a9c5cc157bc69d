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


# -- issue 15: unrecognised path column (case 9), repeated frames (case 10), encodings (case 11)

@pytest.mark.parametrize("text", [
    "image,exposure\na.fits,30\n",          # a known column, but none of the path names
    "Image;Exp_Time\na.fits;30\nb.fits;60\n",  # no known name: a header, since the next row names a frame
], ids=["known-columns", "unknown-columns"])
def test_header_without_a_path_column_names_it_and_the_accepted_names(folder, text):
    _write(folder, text)
    columns = r"'image', 'exposure'" if text.startswith("image") else r"'Image', 'Exp_Time'"
    with pytest.raises(ValueError, match=rf"stack_plan.csv' has no column of frame paths: its header is {columns}; "
                                         r"name that column one of file_path, filepath, file, path, filename, "
                                         r"fits, raw \(or drop the header row"):
        load_stack_plan(folder)


def test_repeated_frames_are_stacked_once_with_one_warning(folder, caplog):
    _write(folder, f"file_path,exposure\na.fits,30\nb.fits,30\n./a.fits,30\n{folder / 'a.fits'},30\n"
                   "night1/d.fits,30\nnight1/../b.fits,30\n")
    with caplog.at_level(logging.WARNING, logger="zemosaic_xp.grid"):
        plan = load_stack_plan(folder)
    assert [e.path.name for e in plan.entries] == ["a.fits", "b.fits", "d.fits"]
    assert plan.duplicates == ["./a.fits", str(folder / "a.fits"), "night1/../b.fits"]
    (record,) = caplog.records
    assert record.getMessage() == (
        f"[GRID] stack_plan.csv lists 2 frame(s) more than once; each is stacked once: 'a.fits' (rows 1, 3, 4: "
        f"'a.fits', './a.fits', '{folder / 'a.fits'}'); 'b.fits' (rows 2, 6: 'b.fits', 'night1/../b.fits')")


def test_identical_repeated_rows_are_listed_once(folder, caplog):
    _write(folder, "a.fits\na.fits\n")
    with caplog.at_level(logging.WARNING, logger="zemosaic_xp.grid"):
        plan = load_stack_plan(folder)
    assert len(plan) == 1 and plan.duplicates == ["a.fits"]
    assert "'a.fits' (rows 1, 2)" in caplog.records[0].getMessage()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"], ids=["utf8", "utf8-bom", "utf16-bom"])
def test_utf8_and_utf16_with_a_bom_read_non_ascii_paths(folder, encoding):
    (folder / "Nébuleuse_001.fits").write_bytes(b"x")
    (folder / "stack_plan.csv").write_bytes("file_path,exposure\nNébuleuse_001.fits,30\na.fits,30\n".encode(encoding))
    plan = load_stack_plan(folder)
    assert [e.path.name for e in plan.entries] == ["Nébuleuse_001.fits", "a.fits"] and not plan.missing


def test_latin1_plan_names_the_file_and_the_byte_offset(folder):
    (folder / "stack_plan.csv").write_bytes("file_path\na.fits\nNébuleuse_001.fits\n".encode("latin-1"))
    # Upstream drops the byte and reports 'Nbuleuse_001.fits' as not found.
    with pytest.raises(ValueError, match=r"stack_plan.csv' is not UTF-8 text: byte 0xe9 at offset 18 \(line 3\) "
                                         r"does not decode \(latin-1 / Windows-1252\?\); save the plan as UTF-8"):
        load_stack_plan(folder)


def test_utf16_without_a_bom_is_not_read_as_mangled_paths(folder):
    (folder / "stack_plan.csv").write_bytes("file_path\na.fits\n".encode("utf-16-le"))
    with pytest.raises(ValueError, match=r"stack_plan.csv' is not UTF-8 text: NUL byte at offset 1 \(UTF-16 "
                                         r"without a byte-order mark"):
        load_stack_plan(folder)

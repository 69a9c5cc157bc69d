"""``zemosaic-xp grid`` and ``zemosaic-xp demo``."""

from __future__ import annotations

import json

import pytest

from zemosaic_xp.cli import main

from .survey_cases import small_survey


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return small_survey(tmp_path_factory.mktemp("survey"), seed=11)


def test_grid_command(survey, tmp_path, capsys):
    config = tmp_path / "zemosaic_config.json"
    config.write_text(json.dumps({"grid_size_factor": 1.0, "enable_resource_telemetry": True}))
    out = tmp_path / "out"
    code = main(["--quiet", "grid", str(survey.folder), str(out), "--config", str(config), "--workers", "1",
                 "--no-gpu"])
    captured = capsys.readouterr()
    assert code == 0
    assert f"mosaic:    {out / 'mosaic_grid.fits'}" in captured.out
    assert f"telemetry: {out / 'resource_telemetry.csv'}" in captured.out
    assert "0 failed of" in captured.out and "1 worker(s), GPU off" in captured.out
    code = main(["--quiet", "grid", str(survey.folder), str(out), "--config", str(config), "--workers", "1"])
    assert code == 0 and " 0 stacked," in capsys.readouterr().out  # resumed
    code = main(["--quiet", "grid", str(survey.folder), str(out), "--config", str(config), "--workers", "1",
                 "--no-resume", "--no-telemetry"])
    assert code == 0 and "telemetry:" not in capsys.readouterr().out


def test_grid_command_errors_are_one_line(survey, tmp_path, capsys):
    assert main(["grid", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("zemosaic-xp: error: no stack_plan.csv")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert main(["grid", str(survey.folder), str(tmp_path / "out"), "--config", str(bad)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_demo_command(tmp_path, capsys):
    code = main(["--quiet", "demo", str(tmp_path / "demo"), "--frames", "8", "--size", "64", "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0
    for name in ("mosaic_grid.fits", "mosaic_grid_preview.png", "resource_telemetry.csv"):
        assert str(tmp_path / "demo" / "mosaic" / name) in out
        assert (tmp_path / "demo" / "mosaic" / name).is_file()
    assert (tmp_path / "demo" / "survey" / "stack_plan.csv").is_file()
    quality = next(line for line in out.splitlines() if line.startswith("quality:"))
    assert "8 frames" in quality and "seam max / sigma" in quality


@pytest.mark.parametrize("switch", [["--gpu"], ["--config", "use_gpu_grid"]], ids=["flag", "config"])
def test_unusable_gpu_is_explained_without_debug(survey, tmp_path, capsys, monkeypatch, switch):
    # issue 15, case 15: the reason was only in the logs; now one line, even with --quiet.
    # The fault injector's health check fails, whether or not this machine has a GPU.
    from zemosaic_xp.gpu import GpuPolicy
    from zemosaic_xp.gpu.testing import FaultInjector

    policies = []
    grid_policy = GpuPolicy.for_grid

    def failing_health(cls, mode="auto", *args, **kwargs):
        injector = FaultInjector(health="error")
        policies.append(grid_policy(mode, injector.backend, fault_injector=injector))
        return policies[-1]

    monkeypatch.setattr(GpuPolicy, "for_grid", classmethod(failing_health))
    if switch[0] == "--config":
        config = tmp_path / "zemosaic_config.json"
        config.write_text(json.dumps({"use_gpu_grid": True}))
        switch = ["--config", str(config)]
    asked = "--gpu" if switch == ["--gpu"] else "the config's GPU switch"
    code = main(["--quiet", "grid", str(survey.folder), str(tmp_path / "out"), "--workers", "1", *switch])
    captured = capsys.readouterr()
    assert code == 0 and "GPU off" in captured.out  # the run goes on on the CPU, as before
    lines = [line for line in captured.err.splitlines() if "GPU" in line]
    assert lines == [f"zemosaic-xp: GPU requested ({asked}) but not usable: numpy:fake-gpu health check failed "
                     f"(InjectedGpuError: CUDA error: an illegal memory access was encountered in arange() "
                     f"(injected)); the tiles are stacked on the CPU"]
    assert len(policies) == 1  # one health check: the run used the CLI's policy


def test_no_gpu_line_when_the_gpu_is_not_requested(survey, tmp_path, capsys, monkeypatch):
    from zemosaic_xp.gpu import GpuPolicy

    monkeypatch.setattr(GpuPolicy, "for_grid", classmethod(lambda cls, *a, **k: pytest.fail("GPU probed")))
    assert main(["--quiet", "grid", str(survey.folder), str(tmp_path / "out"), "--workers", "1"]) == 0
    assert "GPU" not in capsys.readouterr().err


def test_cosmic_option_reaches_the_tiles(survey, tmp_path, capsys):
    # Issue 17: --cosmic always blanks the hits before the reprojection; where one frame
    # alone covers a hit the mosaic has no data there, unlike the run without masks.
    import numpy as np

    from .survey_cases import mosaic_data

    nan = {}
    for mode in ("off", "always"):
        out = tmp_path / mode
        assert main(["--quiet", "grid", str(survey.folder), str(out), "--workers", "1", "--no-gpu",
                     "--cosmic", mode]) == 0
        nan[mode] = int(np.isnan(mosaic_data(out / "mosaic_grid.fits")).sum())
    capsys.readouterr()
    assert nan["always"] > nan["off"]

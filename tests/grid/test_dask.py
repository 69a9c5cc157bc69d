"""Grid tiles on a dask.distributed ``LocalCluster`` of two worker processes: the same
mosaic as a local run, a worker killed mid-run survived, progress in global tile
counts, the CLI's ``--scheduler`` (address and scheduler file), clear errors for an
unreachable scheduler."""

from __future__ import annotations

import json
import logging
import signal
import socket

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from zemosaic_xp import run_grid_mode  # noqa: E402
from zemosaic_xp.cli import main  # noqa: E402
from zemosaic_xp.grid.cluster import connect_cluster, executor_slots  # noqa: E402
from zemosaic_xp.grid.worker import TEST_KILL_ENV  # noqa: E402

from .survey_cases import SMALL_CONFIG, Recorder, mosaic_data, small_survey  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def _local_cluster():
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                    silence_logs=logging.ERROR)


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return small_survey(tmp_path_factory.mktemp("survey"), seed=7)


@pytest.fixture(scope="module")
def local_run(survey, tmp_path_factory):
    result = run_grid_mode(survey.folder, tmp_path_factory.mktemp("local"), config=SMALL_CONFIG, grid_workers=1)
    return result, mosaic_data(result.mosaic_path)


@pytest.fixture(scope="module")
def cluster():
    with _local_cluster() as cl:
        yield cl


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cluster_gives_the_local_mosaic_and_global_progress(survey, local_run, cluster, tmp_path, caplog):
    rec = Recorder()
    with connect_cluster(cluster.scheduler_address) as client, \
            caplog.at_level(logging.INFO, logger="zemosaic_xp"):
        executor = client.get_executor()
        assert executor_slots(executor, 1) == 2  # every worker thread of the cluster
        result = run_grid_mode(survey.folder, tmp_path, rec, config=SMALL_CONFIG, executor=executor)
        worker_pids = set(client.run(lambda: __import__("os").getpid()).values())
    assert result.tiles_processed == result.tiles_total and result.workers == 2
    assert f"dask cluster {cluster.scheduler_address}, 2 worker(s)" in caplog.text
    pids = {int(r.getMessage().split("pid=")[1].split()[0]) for r in caplog.records
            if "processed by worker pid=" in r.getMessage()}
    assert pids and pids <= worker_pids  # tiles ran on the cluster's workers
    assert result.mosaic_path.read_bytes() == local_run[0].mosaic_path.read_bytes()
    counts = [k for k in rec.keys() if isinstance(k, str) and k.startswith("MASTER_TILE_COUNT_UPDATE:")]
    assert counts[-1] == f"MASTER_TILE_COUNT_UPDATE:{result.tiles_total}/{result.tiles_total}"
    assert [int(c.split(":")[1].split("/")[0]) for c in counts] == list(range(1, result.tiles_total + 1))


def test_worker_killed_mid_run_is_survived(survey, local_run, tmp_path, monkeypatch):
    # The worker making tile 2 SIGKILLs itself on the first attempt (the environment is read
    # by worker processes spawned after this point); dask reschedules the tile.
    monkeypatch.setenv(TEST_KILL_ENV, "2")
    with _local_cluster() as cl, connect_cluster(cl.scheduler_address) as client:
        result = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG, executor=client.get_executor())
    assert (tmp_path / "tiles" / ".test_killed_0002").is_file()  # the kill did happen
    assert result.failed_tiles == {} and result.tiles_processed == result.tiles_total
    np.testing.assert_array_equal(mosaic_data(result.mosaic_path), local_run[1])


def test_cli_scheduler_address_and_file(survey, local_run, cluster, tmp_path, capsys):
    out = tmp_path / "by_address"
    code = main(["--quiet", "grid", str(survey.folder), str(out), "--scheduler", cluster.scheduler_address,
                 "--config", _config_file(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "0 failed of" in captured.out and "2 worker(s)" in captured.out
    assert (out / "mosaic_grid.fits").read_bytes() == local_run[0].mosaic_path.read_bytes()
    scheduler_file = tmp_path / "scheduler.json"
    scheduler_file.write_text(json.dumps({"address": cluster.scheduler_address}))
    out2 = tmp_path / "by_file"
    code = main(["--quiet", "grid", str(survey.folder), str(out2), "--scheduler", str(scheduler_file),
                 "--workers", "3", "--config", _config_file(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "--workers is ignored with --scheduler" in captured.err
    assert (out2 / "mosaic_grid.fits").read_bytes() == local_run[0].mosaic_path.read_bytes()


def _config_file(folder) -> str:
    path = folder / "zemosaic_config.json"
    path.write_text(json.dumps(SMALL_CONFIG))
    return str(path)


def test_unreachable_scheduler_is_a_clear_error(survey, tmp_path, capsys):
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(ConnectionError, match=f"cannot reach the dask scheduler at {address} within 1 s"):
        with connect_cluster(address, timeout=1):
            pass
    code = main(["grid", str(survey.folder), str(tmp_path / "out"), "--scheduler", address])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"zemosaic-xp: error: --scheduler: cannot reach the dask scheduler at {address}")
    assert not (tmp_path / "out" / "mosaic_grid.fits").exists()


def test_missing_scheduler_file_is_a_clear_error(survey, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "scheduler.json"
    code = main(["grid", str(survey.folder), str(tmp_path / "out"), "--scheduler", str(missing)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == f"zemosaic-xp: error: --scheduler: dask scheduler file '{missing}' does not exist"


def test_slots_of_local_executors():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert executor_slots(pool, 1) == 3
    assert executor_slots(object(), 4) == 4  # an executor that does not tell: the default

"""cfer.io: atomic writes, a full disk, damaged torch files, and the one-run-per-folder lock."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cfer.io import (
    LOCK_NAME,
    DiskFullError,
    FolderLockedError,
    atomic_write,
    atomic_write_bytes,
    disk_full_error,
    hold_folder,
    load_torch_file,
)


def _fill_disk_after(count: int):
    def write(file):
        file.write(b"x" * count)
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


def test_a_full_disk_names_the_file_keeps_the_old_content_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "results" / "metrics.json"
    atomic_write_bytes(target, b"old")
    with pytest.raises(DiskFullError) as caught:
        atomic_write(target, _fill_disk_after(5000))
    message = str(caught.value)
    assert str(target) in message and "free" in message and "more than the 4.9 KiB" in message
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_a_known_size_is_reported_as_the_space_needed(tmp_path, monkeypatch):
    error = disk_full_error(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path / "a" / "b.bin", 3 * 1024 ** 2)
    assert "quota" in str(error) and "needs 3.0 MiB" in str(error) and str(tmp_path / "a" / "b.bin") in str(error)


def test_other_write_errors_pass_through_unchanged(tmp_path):
    def fail(file):
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError) as caught:
        atomic_write(tmp_path / "x.bin", fail)
    assert not isinstance(caught.value, DiskFullError) and caught.value.errno == errno.EIO
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_torch_file_is_named_with_the_remedy(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"a": torch.arange(1000)}, path)
    assert torch.equal(load_torch_file(path, "delete it")["a"], torch.arange(1000))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"state\.pt is not a readable torch.save file .*; delete it"):
        load_torch_file(path, "delete it")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_torch_file(tmp_path / "missing.pt", "delete it")


# --- the lock ------------------------------------------------------------------------------------

_HOLDER = """
import sys, time
from cfer.io import hold_folder
with hold_folder(sys.argv[1], "cfer train-incremental"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A second process holding ``tmp_path / "run"``."""
    folder = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield folder, process
    process.kill()
    process.wait()


def test_a_folder_held_by_a_live_process_is_refused_naming_the_folder_and_pid(holder):
    folder, process = holder
    with pytest.raises(FolderLockedError) as caught:
        with hold_folder(folder):
            pass
    assert str(folder) in str(caught.value) and f"pid {process.pid}" in str(caught.value)
    assert "cfer train-incremental" in str(caught.value)
    with pytest.raises(FolderLockedError, match=f"inside .*pid {process.pid}"):
        with hold_folder(folder / "basic"):
            pass
    assert not (folder / "basic").exists()


def test_the_lock_of_a_killed_run_is_taken_over(holder, caplog):
    folder, process = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (folder / LOCK_NAME).exists()  # left behind by the killed run
    with caplog.at_level("INFO", logger="cfer.io"), hold_folder(folder):
        recorded = json.loads((folder / LOCK_NAME).read_text())
        assert recorded["pid"] == os.getpid()
    assert f'"pid": {process.pid}' in caplog.text
    assert not (folder / LOCK_NAME).exists()


def test_the_lock_is_reentrant_and_released_on_error(tmp_path):
    folder = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"):
        with hold_folder(folder), hold_folder(folder), hold_folder(folder / "inner"):
            raise RuntimeError("boom")
    started = time.monotonic()
    check = subprocess.run([sys.executable, "-c", _HOLDER.replace("120", "0"), str(folder)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and "held" in check.stdout, check.stderr
    assert time.monotonic() - started < 60


def test_a_full_disk_behind_another_error_is_found(tmp_path):
    def torch_like(file):  # torch.save raises "unexpected pos" while handling the OSError of a full disk
        file.write(b"x" * 10)
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2987136 vs 2987032")

    with pytest.raises(DiskFullError, match="disk is full"):
        atomic_write(tmp_path / "state.pt", torch_like)
    assert list(tmp_path.iterdir()) == []

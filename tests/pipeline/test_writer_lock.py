"""One writing process per data directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from core.errors import DataDirectoryBusyError
from pipeline import writer_lock

HOLDER = textwrap.dedent("""
    import sys, time
    from pipeline import writer_lock
    writer_lock.acquire(sys.argv[1])
    print("holding", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def holder(tmp_path):
    """Another process holding the writer lock of ``tmp_path``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    yield proc
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def test_a_second_process_gets_a_clear_error_naming_the_holder(tmp_path, holder):
    with pytest.raises(DataDirectoryBusyError, match=rf"in use by pid {holder.pid} .*one process writes"):
        writer_lock.acquire(tmp_path)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    key = writer_lock.acquire(tmp_path)
    writer_lock.release(key)


def test_one_process_may_hold_it_more_than_once_until_the_last_release(tmp_path):
    first = writer_lock.acquire(tmp_path)
    second = writer_lock.acquire(tmp_path)
    writer_lock.release(first)
    probe = subprocess.run([sys.executable, "-c", "import sys; from pipeline import writer_lock; "
                            "writer_lock.acquire(sys.argv[1])", str(tmp_path)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert probe.returncode != 0 and "DataDirectoryBusyError" in probe.stderr
    writer_lock.release(second)
    probe = subprocess.run([sys.executable, "-c", "import sys; from pipeline import writer_lock; "
                            "writer_lock.acquire(sys.argv[1])", str(tmp_path)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert probe.returncode == 0, probe.stderr

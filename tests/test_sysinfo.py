"""`spike.sysinfo`: processes, CPU time and peak memory, as Spike reads them."""

import collections
import os
import subprocess
import sys
import time

import numpy as np
import psutil

from spike import sysinfo


def test_a_zombie_or_reaped_process_is_not_running():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        assert sysinfo.process_running(os.getpid())
        deadline = time.monotonic() + 30
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        assert not sysinfo.process_running(child.pid)  # exited, not yet reaped
    finally:
        child.wait()
    assert not sysinfo.process_running(child.pid)
    assert not sysinfo.process_running(-1)


def test_peak_rss_is_this_processes_high_water_mark_in_bytes():
    before = sysinfo.peak_rss_bytes()
    assert sysinfo.peak_rss_bytes(os.getpid()) >= before
    assert before >= psutil.Process().memory_info().rss * 0.5  # same unit: bytes
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, every page touched
    # the peak grew by the block (unless it was far higher already)
    assert sysinfo.peak_rss_bytes() >= before + 0.9 * block.nbytes or before > 4 * block.nbytes
    del block
    assert sysinfo.peak_rss_bytes(2**22 + 12345) == 0  # no such process


def test_cpu_busy_and_total_seconds_grow_with_work():
    busy, total = sysinfo.cpu_busy_total()
    start = time.process_time()
    while time.process_time() - start < 0.2:  # a fifth of a CPU second, busy
        pass
    busy_after, total_after = sysinfo.cpu_busy_total()
    assert 0 <= busy <= total
    assert busy_after - busy >= 0.1 and total_after - total >= busy_after - busy


def test_busy_is_all_but_idle_and_io_wait_and_guest_time_counts_once(monkeypatch):
    """Linux counts guest time inside user time: it is not added again; a virtual
    machine's stolen time is busy (the CPU was not there for us)."""
    fields = "user nice system idle iowait irq softirq steal guest guest_nice"
    Times = collections.namedtuple("Times", fields)
    monkeypatch.setattr(psutil, "cpu_times", lambda: Times(50, 5, 20, 100, 10, 1, 2, 12, 8, 1))
    assert sysinfo.cpu_busy_total() == (50 + 5 + 20 + 1 + 2 + 12, 200)

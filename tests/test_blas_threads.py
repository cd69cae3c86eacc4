"""fit's BLAS thread count: every core, unless other processes are busy on the machine."""

import os

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import tinynet.train as train
from tinynet.train import MACHINE, BlasThreads


def blas_threads():
    return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


@pytest.fixture
def machine(monkeypatch):
    """A fake /proc/stat and os.times: ``machine.others`` cores busy in other processes, one in ours."""

    class Clock:
        others, now, everyone = 0.0, 100.0, 0.0

        def read(self):  # one second between two readings
            self.now += 1.0
            self.everyone += self.others + 1.0
            return self.everyone, self.now, self.now

    clock = Clock()
    monkeypatch.setattr(train, "cpu_seconds", clock.read)
    monkeypatch.setattr(train.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(train.time, "perf_counter", lambda: clock.now)
    saved = list(MACHINE)
    MACHINE[:] = [float("-inf"), 0.0]
    yield clock
    MACHINE[:] = saved


@pytest.mark.skipif(not blas_threads(), reason="threadpoolctl sees no BLAS library in this NumPy")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: one thread either way")
def test_every_core_on_a_quiet_machine_and_fewer_beside_a_busy_process(machine):
    before = blas_threads()
    cores = os.cpu_count()
    with BlasThreads(np.zeros((4, 3))) as threads:
        threads.on = True  # as where /proc/stat exists
        threads.adjust()  # nothing measured yet: it looks, and sees a quiet machine
        assert blas_threads() == {cores}
        machine.others = 1.0  # another process takes a core
        threads.adjust()
        assert blas_threads() == {cores - 1}
        assert MACHINE[1] == pytest.approx(1.0)
        machine.others = 0.0  # and lets it go
        threads.adjust()
        assert blas_threads() == {cores}
    assert blas_threads() == before  # restored after fit


def test_a_recent_measurement_is_reused_by_the_next_fit(machine, monkeypatch):
    looks = []
    monkeypatch.setattr(train.time, "sleep", looks.append)
    for _ in range(3):  # three short fits in a row: only the first looks at the machine before starting
        with BlasThreads(np.zeros((4, 3))) as threads:
            threads.on = True
            threads.adjust()
    assert looks == [0.1]


def test_never_fewer_than_one_thread_and_nothing_on_cupy_arrays(machine):
    machine.others = 64.0  # a crowded machine
    with BlasThreads(np.zeros((4, 3))) as threads:
        threads.on = True
        threads.adjust()
        assert min(blas_threads() or {1}) >= 1

    class NotNumpy:  # the backend of anything that is not a NumPy array counts as not numpy
        __module__ = "cupy"

    assert not BlasThreads(NotNumpy()).on

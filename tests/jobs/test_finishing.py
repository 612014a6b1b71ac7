"""The finisher: rows in a pool, commits in order, nothing committed after a failed commit."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from tv3s.jobs.finishing import Finisher, HostCopy


def test_commits_run_in_order_each_after_its_rows():
    log: list[str] = []
    with Finisher(row_threads=4, max_rows=3) as finisher:
        for unit in range(5):
            rows = [finisher.row(lambda u=unit, i=i: time.sleep(0.01 * ((i + u) % 3)) or f"{u}.{i}") for i in range(4)]
            finisher.commit(lambda u=unit, rows=rows: log.append(f"{u}: " + " ".join(r.result() for r in rows)))
    assert log == [f"{u}: {u}.0 {u}.1 {u}.2 {u}.3" for u in range(5)]


class Died(BaseException):
    """Like the tests' simulated crash: not an Exception."""


def test_a_failed_commit_stops_every_later_one_and_reaches_the_caller():
    done: list[int] = []
    release = threading.Event()

    def commit(unit: int) -> None:
        if unit == 1:
            release.wait(5)
            raise Died("unit 1")
        done.append(unit)

    with pytest.raises(Died, match="unit 1"), Finisher(row_threads=1, max_rows=1, max_commits=8) as finisher:
        for unit in range(4):
            finisher.commit(lambda u=unit: commit(u))
        release.set()
    assert done == [0]  # 2 and 3 were queued behind the failure: skipped


def test_the_failure_surfaces_at_the_next_request():
    with pytest.raises(ZeroDivisionError), Finisher(row_threads=1, max_rows=1, max_commits=1) as finisher:
        finisher.commit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            for _ in range(100):
                finisher.commit(lambda: None)  # the bound makes it wait for the failed one
        with pytest.raises(ZeroDivisionError):
            finisher.row(lambda: None)
    # and once more as the block ends


def test_the_compute_threads_error_wins_and_queued_commits_still_run():
    done: list[int] = []
    with pytest.raises(KeyError), Finisher(row_threads=1, max_rows=1, max_commits=4) as finisher:
        for unit in range(3):
            finisher.commit(lambda u=unit: time.sleep(0.02) or done.append(u))
        raise KeyError("reading failed")
    assert done == [0, 1, 2]  # as inline: units finished before the error are committed


def test_rows_in_flight_are_bounded():
    running, most = 0, 0
    lock = threading.Lock()

    def row() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.005)
        with lock:
            running -= 1

    with Finisher(row_threads=8, max_rows=3) as finisher:
        for _ in range(40):
            finisher.row(row)
    assert most <= 3


def test_a_host_copy_of_cpu_tensors_is_their_values():
    labels = torch.arange(12, dtype=torch.uint8).reshape(3, 4)
    host = HostCopy({"labels": labels, "finite": torch.isfinite(torch.ones(2)).all()}).wait()
    assert np.array_equal(host["labels"], labels.numpy()) and bool(host["finite"])


def test_without_threads_rows_and_commits_run_in_the_callers_thread_and_fail_at_once():
    caller = threading.get_ident()
    ran: list[int] = []
    with Finisher(row_threads=0, max_rows=2) as finisher:
        assert finisher.row(threading.get_ident).result() == caller
        finisher.commit(lambda: ran.append(threading.get_ident()))
        assert ran == [caller]  # done before commit() returned

    def died() -> None:
        raise Died("inline")

    with Finisher(row_threads=0, max_rows=2) as finisher:
        with pytest.raises(Died):
            finisher.commit(died)
        finisher._failure = None  # the block then ends without raising it again

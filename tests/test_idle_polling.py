"""Idle CPUs poll while R is stopped, and only then (the kernel's CPU-latency request)."""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from conftest import RLauncher
from test_record import xrtop

import sampler.thread
from sampler.idlepoll import CPU_LATENCY_DEVICE
from sampler.idlepoll import IdlePolling
from sampler.model import SampleLog
from sampler.target import attach
from sampler.thread import SamplerThread

needs_root = pytest.mark.skipif(
    not os.access(CPU_LATENCY_DEVICE, os.W_OK), reason=f"{CPU_LATENCY_DEVICE} needs root"
)


@contextlib.contextmanager
def latency_reader() -> Iterator[int]:
    """A descriptor to read the machine's CPU-latency limit from (opening it, even to
    read, adds a request with the default value: it never lowers the limit)."""
    fd = os.open(CPU_LATENCY_DEVICE, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def latency_limit(fd: int) -> int:
    """The limit in force now, in microseconds (0: idle CPUs poll)."""
    value: int = struct.unpack("=i", os.pread(fd, 4, 0))[0]
    return value


_WATCHER = f"""
import os, struct, time
fd = os.open({CPU_LATENCY_DEVICE!r}, os.O_RDONLY)
zero = reads = 0
end = time.monotonic() + float(os.sys.argv[1])
while time.monotonic() < end:
    zero += struct.unpack("=i", os.pread(fd, 4, 0))[0] == 0
    reads += 1
print(zero, reads)
"""


def watch_latency(seconds: float) -> tuple[int, int]:
    """(reads that found idle CPUs polling, all reads) of the limit, read in a loop for
    `seconds` by another process."""
    out = subprocess.run(
        [sys.executable, "-c", _WATCHER, str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    )
    zero, reads = out.stdout.split()
    return int(zero), int(reads)


def test_without_the_device_polling_does_nothing() -> None:
    for path in (None, "/nonexistent/cpu_dma_latency", "/"):
        polling = IdlePolling(path)
        assert not polling.active
        polling.on()
        polling.off()
        polling.close()


def test_a_refused_request_turns_polling_off_instead_of_failing() -> None:
    polling = IdlePolling("/dev/full")  # opens for writing; every write fails (ENOSPC)
    assert polling.active
    polling.on()
    assert not polling.active
    polling.off()


class WatchedPolling(IdlePolling):
    """`IdlePolling` that reads the machine's limit right after each request it makes, in
    the sampler's own thread, and notes when: what the kernel made of every request, and
    for how long idle CPUs polled, whatever CPU the scheduler gives which process."""

    def __init__(self) -> None:
        super().__init__()
        self._reader = os.open(CPU_LATENCY_DEVICE, os.O_RDONLY)
        #: (time, polling asked for, the limit in force right after) per request.
        self.requests: list[tuple[float, bool, int]] = []

    def on(self) -> None:
        super().on()
        self.requests.append((time.perf_counter(), True, latency_limit(self._reader)))

    def off(self) -> None:
        super().off()
        self.requests.append((time.perf_counter(), False, latency_limit(self._reader)))

    def close(self) -> None:
        super().close()
        os.close(self._reader)


@needs_root
def test_idle_cpus_poll_during_stops_only(
    r_launcher: RLauncher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a busy R and the machine's CPU-latency limit before xrtop
    run = r_launcher.start("busy.R", "60")
    watched: list[WatchedPolling] = []

    def polling(*path: str | None) -> IdlePolling:
        """The sampler's request (the device), watched; IdlePolling(None) as it was."""
        if path:
            return IdlePolling(*path)
        watched.append(WatchedPolling())
        return watched[-1]

    monkeypatch.setattr(sampler.thread, "IdlePolling", polling)
    with latency_reader() as fd:
        before = latency_limit(fd)
        assert before > 0, "another process keeps CPUs polling: this test cannot tell"
        # WHEN it is sampled at 1000 Hz for a second
        thread = SamplerThread(attach(run.pid), SampleLog(1000), rate_hz=1000)
        thread.start()
        thread.wait_ready()
        time.sleep(1.0)
        samples, polled = thread.stats().samples, thread.polls_idle
        thread.stop()
        after = latency_limit(fd)
    # THEN every stop was bracketed by a request the kernel took (idle CPUs poll, limit 0)
    # and one it dropped again (the limit as before), polling for only part of the time,
    # and the limit is as before once xrtop is done
    assert samples > 300
    assert polled and len(watched) == 1
    requests = watched[0].requests
    assert len(requests) >= 2 * samples
    assert [asked for _, asked, _ in requests] == [True, False] * (len(requests) // 2)
    assert {limit for _, asked, limit in requests if asked} == {0}
    assert {limit for _, asked, limit in requests if not asked} == {before}
    ons, offs = requests[::2], requests[1::2]
    polled_for = sum(off - on for (on, _, _), (off, _, _) in zip(ons, offs))
    assert 0 < polled_for < 0.5 * (requests[-1][0] - requests[0][0]), polled_for
    assert after == before


@needs_root
@pytest.mark.parametrize(
    ("blocking", "poll_idle"), [(True, False), (False, True)], ids=["no-cpu-poll", "nonblocking"]
)
def test_idle_cpus_never_poll_without_stops_or_with_polling_off(
    r_launcher: RLauncher, blocking: bool, poll_idle: bool
) -> None:
    # GIVEN a busy R and the machine's CPU-latency limit before xrtop
    run = r_launcher.start("busy.R", "60")
    with latency_reader() as fd:
        before = latency_limit(fd)
        assert before > 0, "another process keeps CPUs polling: this test cannot tell"
        # WHEN it is sampled at 1000 Hz without stops, or with polling off, while another
        # process reads the limit as fast as it can
        thread = SamplerThread(
            attach(run.pid), SampleLog(1000), rate_hz=1000, blocking=blocking, poll_idle=poll_idle
        )
        thread.start()
        thread.wait_ready()
        seen_zero, reads = watch_latency(1.0)
        samples, polled = thread.stats().samples, thread.polls_idle
        thread.stop()
        after = latency_limit(fd)
    # THEN idle CPUs never polled, and the limit is as before
    assert samples > 300
    assert not polled
    assert reads > 0 and seen_zero == 0
    assert after == before


@needs_root
def test_record_says_when_cpus_poll_and_no_cpu_poll_turns_it_off(r_launcher: RLauncher) -> None:
    run = r_launcher.start("busy.R", "60")
    polled = xrtop("record", "-p", str(run.pid), "-d", "0.5", "-o", os.devnull, "-v")
    assert polled.returncode == 0, polled.stderr
    assert "idle CPUs poll while R is stopped" in polled.stderr
    plain = xrtop(
        "record", "-p", str(run.pid), "-d", "0.5", "-o", os.devnull, "-v", "--no-cpu-poll"
    )
    assert plain.returncode == 0, plain.stderr
    assert "sampling R" in plain.stderr
    assert "idle CPUs poll" not in plain.stderr

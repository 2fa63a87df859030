"""The fast sampling path against real R: a snapshot (one read while stopped, decoded after
resuming) must give exactly the stack that a full read in the same stop gives, decoding it
must not touch the target's memory (it runs again by then), and the check made while
stopped must say exactly when the snapshot is enough."""

from __future__ import annotations

import time

from conftest import REnv
from conftest import RLauncher

from sampler.ptrace import Tracer
from sampler.target import attach


def test_snapshot_decodes_to_the_same_stack_as_a_full_read(
    r_env: REnv, r_launcher: RLauncher
) -> None:
    # GIVEN recursion that keeps changing depth (fib) under a fixed chain, in this R
    run = r_launcher.start("busy.R", "60", env=r_env)
    target = attach(run.pid)
    reader = target.reader
    tracer = Tracer(run.pid)
    compared = misses = deepest = 0
    try:
        for _ in range(150):
            # WHEN one stop is decoded both ways: from the snapshot, and by a full read
            tracer.stop()
            try:
                got = reader.snapshot()
                calls = target.memory.calls
                complete = reader.snapshot_complete(got)
                fast = reader.decode_snapshot(got)
                reads_while_decoding = target.memory.calls - calls
                slow = reader.capture()
            finally:
                tracer.resume()
            # THEN the quick check (made while stopped) agrees with the decoder exactly
            assert complete == (fast is not None)
            if fast is None:
                misses += 1  # the snapshot lacked something: the sampler reads again
                continue
            # AND decoding the snapshot read nothing from the target
            assert reads_while_decoding == 0
            # AND both give the same stack
            fast_stack, slow_stack = reader.finish(fast), reader.finish(slow)
            assert fast_stack.names == slow_stack.names
            assert fast_stack.gc == slow_stack.gc
            compared += 1
            deepest = max(deepest, len(fast_stack.names))
            time.sleep(0.002)
    finally:
        tracer.detach()
    # AND the snapshot usually has everything (else the fast path would rarely be taken)
    assert compared > 100, (compared, misses)
    # AND the stacks compared were real ones, recursion included
    assert deepest >= 10

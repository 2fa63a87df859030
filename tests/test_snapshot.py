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
    # R's frames alone: the builtin frame placed between frames (R >= 4.4,
    # sampler.builtins) reads byte-code bodies after resuming by its own design, and is
    # tested in test_builtins.
    reader.builtins = None
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


def test_stacks_seen_lately_are_recognised_and_named_as_a_full_read_names_them(
    r_env: REnv, r_launcher: RLauncher
) -> None:
    # GIVEN alpha and beta taking turns: their contexts, and spin's below them, sit at the
    # same C-stack addresses, so only the calls tell the two stacks apart
    run = r_launcher.start("split.R", "60", env=r_env)
    target = attach(run.pid)
    reader = target.reader
    tracer = Tracer(run.pid)
    recognised: set[tuple[str, ...]] = set()
    try:
        for _ in range(300):
            # WHEN one stop is decoded both ways
            tracer.stop()
            try:
                got = reader.snapshot()
                before = reader.recognised
                fast = reader.decode_snapshot(got)
                was_recognised = reader.recognised > before
                slow = reader.capture()
            finally:
                tracer.resume()
            if fast is None:
                continue
            # THEN a recognised stack is exactly the stack a full read finds
            names = reader.finish(fast).names
            assert names == reader.finish(slow).names
            if was_recognised:
                recognised.add(names)
            time.sleep(0.003)
    finally:
        tracer.detach()
    # AND both functions' stacks were recognised (so the test saw the turns)
    innermost_callers = {names[1] for names in recognised if len(names) > 1}
    assert {"alpha", "beta"} <= innermost_callers, recognised

"""The span capture against real R (sampler.spans): a stack read from spans of R's stacks
(decoded after resuming) equals a full walk in the same stop, on varied code whose stacks
rarely repeat and on recursion deeper than the spans copied, in every R; and a stopped
capture takes spans where the snapshot plan misses (varied code), the plan where it holds
(a loop's stacks, recognised), in every R."""

from __future__ import annotations

import time

import pytest
from conftest import REnv
from conftest import RLauncher

from sampler.capture import StoppedCapture
from sampler.ptrace import Tracer
from sampler.target import attach


@pytest.mark.parametrize("script", ["varied.R", "deep.R"])
def test_a_span_read_stack_equals_a_full_walk_in_the_same_stop(
    r_env: REnv, r_launcher: RLauncher, script: str
) -> None:
    # GIVEN varied code (random call trees over many base R functions) or deep recursion
    run = r_launcher.start(script, "180", env=r_env)
    if script == "varied.R":
        # past R's first calls: the byte-code compiler compiles each function at its
        # second call, and its own calls' heads (`cb$putconst(...)`) are each named while
        # R is stopped the first time a sample meets them
        time.sleep(2)
    target = attach(run.pid)
    reader = target.reader
    # R's frames alone, in both readers: the builtin frame placed between frames (R >= 4.4,
    # sampler.builtins) reads byte-code bodies after resuming by its own design, and is
    # tested in test_builtins.
    reader.builtins = None
    walker = attach(run.pid).reader  # a second reader, for the full walks
    walker.builtins = None
    spans = reader.spans
    assert spans is not None  # every R says where its stacks are
    tracer = Tracer(run.pid)
    compared = decoded_after_resume = reused_outer = deepest = 0
    try:
        # (a full walk of the deep recursion reads thousands of contexts: fewer stops)
        for _ in range(120 if script == "varied.R" else 40):
            # WHEN one stop is read from spans, and then by a full walk
            tracer.stop()
            try:
                assert tracer.save_registers()
                got = reader.snapshot_at(tracer.stack_pointer())
                complete = reader.snapshot_complete(got)
                reused_outer += spans.outer_same
                stopped = None if complete else reader.decode_stopped(got)
                full = walker.capture()
            finally:
                tracer.resume()
            calls = target.memory.calls
            fast = reader.decode_snapshot(got) if complete else stopped
            # THEN a copy said complete decodes after resuming without reading R
            assert fast is not None
            assert target.memory.calls == calls
            decoded_after_resume += complete
            # AND gives the stack the full walk gives
            fast_stack, full_stack = reader.finish(fast), walker.finish(full)
            assert fast_stack.names == full_stack.names
            assert fast_stack.gc == full_stack.gc
            compared += 1
            deepest = max(deepest, len(fast_stack.names))
            time.sleep(0.003)
    finally:
        tracer.detach()
    # AND most samples needed no reads beyond the spans' copy
    assert decoded_after_resume > 0.8 * compared
    if script == "deep.R":
        # AND the recursion went beyond the spans, its outer part reused sample after sample
        assert deepest >= 300
        assert reused_outer > 0.8 * compared
    else:
        assert deepest >= 20


@pytest.mark.parametrize(("script", "spans_most"), [("varied.R", True), ("split.R", False)])
def test_a_stopped_capture_takes_spans_where_the_plan_misses_and_the_plan_where_it_holds(
    r_env: REnv, r_launcher: RLauncher, script: str, spans_most: bool
) -> None:
    # GIVEN varied code whose stacks rarely repeat, or a loop of two stacks taking turns
    run = r_launcher.start(script, "120", env=r_env)
    target = attach(run.pid)
    tracer = Tracer(run.pid)
    capture = StoppedCapture(tracer, target.reader)
    names: list[tuple[str, ...]] = []
    try:
        for _ in range(150):
            # WHEN a stopped capture samples it
            names.append(capture.sample()[0].names)
            time.sleep(0.005)
    finally:
        tracer.detach()
    # THEN it copied spans for most samples of varied code, and for few of the loop's
    if spans_most:
        assert capture.span_samples > 0.7 * len(names), capture.span_samples
        assert max(len(n) for n in names) >= 20
    else:
        assert capture.span_samples < 0.3 * len(names), capture.span_samples
        assert {"alpha", "beta"} <= {name for n in names for name in n}

"""Recognising a stack seen lately (sampler.knownstacks) never names a stack wrongly, and
saves the walk where it should: a reader with history names every stack as a fresh reader
does, and a loop's stacks stay recognised through the detours that make new plans.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from fakes import GLOBALS
from fakes import HEAP
from fakes import STACK
from fakes import FakeMemory
from fakes import Frame
from fakes import build_image
from fakes import outcome as sample_or_error
from fakes import take_sample
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from sampler.errors import SampleError
from sampler.layouts import CTXT_BUILTIN
from sampler.layouts import CTXT_FUNCTION
from sampler.layouts import ContextLayout
from sampler.layouts import layout_for
from sampler.model import Stack
from sampler.rstack import StackReader

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LAYOUTS = {v: layout_for(v, "EM_X86_64") for v in [(4, 2), (4, 5)]}


def outcome(reader: StackReader) -> Stack | SampleError:
    """One sample; only a SampleError may escape (anything else fails the test)."""
    result = sample_or_error(reader)
    assert isinstance(result, (Stack, SampleError))
    return result


# The reader recognises a stack it decoded lately from a few links (KnownStacks.find)
# instead of walking it again. R reuses the same addresses all the time (a loop calling
# f then g puts both contexts at one C-stack address; a freed call cell is reused), so
# a reader with history must name every stack exactly as a reader seeing it first does.


def _calls_and_symbols(
    segments: dict[int, bytearray], layout: ContextLayout, contexts: list[int]
) -> tuple[list[int], list[int]]:
    """The call cells the image's contexts point at, and the symbols those calls name."""
    calls = {
        struct.unpack_from("<Q", segments[STACK], a - STACK + layout.call)[0] for a in contexts
    }
    symbols = {struct.unpack_from("<Q", segments[HEAP], c - HEAP + 32)[0] for c in calls}
    return sorted(calls), sorted(symbols)


def _named(reader: StackReader) -> tuple[str, ...] | str:
    """The sample's frame names, or the kind of error it ended in."""
    result = outcome(reader)
    return result.kind if isinstance(result, SampleError) else result.names


@FUZZ
@given(
    data=st.data(),
    frames=st.lists(st.sampled_from(["f", "g", "h", "k"]).map(Frame), min_size=1, max_size=12),
    version=st.sampled_from(sorted(LAYOUTS)),
)
def test_a_reader_with_history_names_every_stack_as_a_fresh_reader_does(
    data: st.DataObject, frames: list[Frame], version: tuple[int, int]
) -> None:
    layout = LAYOUTS[version]
    image = build_image(frames, layout, 0)
    segments = {k: bytearray(v) for k, v in image.segments.items()}
    contexts = image.context_addresses
    calls, symbols = _calls_and_symbols(segments, layout, contexts)
    memory = FakeMemory({k: bytes(v) for k, v in segments.items()})
    reader = StackReader(memory, image.binary(), layout, version)
    if len(contexts) > 1 and data.draw(st.booleans(), label="detour first"):
        # Known stacks, a detour long enough for new plans, and back: the plan the steps
        # below start from took the loop's known stacks over from an earlier plan.
        for head, count in ((contexts[0], 2), (contexts[-1], 2), (contexts[0], 2)):
            struct.pack_into("<Q", segments[GLOBALS], 0, head)
            memory.segments = {k: bytes(v) for k, v in segments.items()}
            for _ in range(count):
                take_sample(reader)
    for _ in range(data.draw(st.integers(1, 12), label="steps")):
        # WHEN R moves on: same addresses, other contents (or nothing changes at all)
        what = data.draw(st.sampled_from(["call", "car", "other", "head", "flag", "same"]))
        i = data.draw(st.integers(0, len(contexts) - 1), label="context")
        base = contexts[i] - STACK
        if what == "call":  # the context at this address now runs another call
            struct.pack_into(
                "<Q", segments[STACK], base + layout.call, data.draw(st.sampled_from(calls))
            )
        elif what == "car":  # a call cell freed and reused for a call of another function
            cell_at = data.draw(st.sampled_from(calls)) - HEAP
            struct.pack_into(
                "<Q", segments[HEAP], cell_at + 32, data.draw(st.sampled_from(symbols))
            )
        elif what == "other":  # the same frames, a new instance (promises, environment)
            struct.pack_into(
                "<Q", segments[STACK], base + layout.call + 8, data.draw(st.integers(0, 2**64 - 1))
            )
        elif what == "head":  # the stack is shallower or deeper
            struct.pack_into("<Q", segments[GLOBALS], 0, contexts[i])
        elif what == "flag":  # a function context becomes another kind, or back
            flag = data.draw(st.sampled_from([0, CTXT_BUILTIN, CTXT_FUNCTION]))
            struct.pack_into("<i", segments[STACK], base + layout.callflag, flag)
        memory.segments = {k: bytes(v) for k, v in segments.items()}
        # THEN the reader with history and a fresh one name the stack alike
        fresh = StackReader(FakeMemory(memory.segments), image.binary(), layout, version)
        assert _named(reader) == _named(fresh)


def test_a_stack_seen_lately_is_recognised_without_walking_it() -> None:
    # The control for the test above: it must exercise the recognition, not only the walk.
    layout = LAYOUTS[(4, 2)]
    image = build_image([Frame("f"), Frame("g"), Frame("h")], layout)
    memory = FakeMemory(image.segments)
    reader = StackReader(memory, image.binary(), layout, (4, 2))
    for _ in range(5):
        stack = take_sample(reader)
        assert isinstance(stack, Stack)
        assert stack.names == ("f", "g", "h")
    assert reader.recognised >= 3


Samples = Callable[[int, int], tuple[tuple[str, ...], int]]
_LOOP_LAYOUT = LAYOUTS[(4, 2)]


def _reader_over(names: list[str]) -> tuple[list[int], dict[int, bytearray], Samples]:
    """A fake image of function frames `names` (innermost first), its segments to edit, and
    `samples(head, count)`: take `count` samples with R_GlobalContext at `head` through
    one reader with history; return the one stack they all named and how many of them the
    reader recognised."""
    layout = _LOOP_LAYOUT
    image = build_image([Frame(name) for name in names], layout)
    segments = {k: bytearray(v) for k, v in image.segments.items()}
    memory = FakeMemory({k: bytes(v) for k, v in segments.items()})
    reader = StackReader(memory, image.binary(), layout, (4, 2))

    def samples(head: int, count: int) -> tuple[tuple[str, ...], int]:
        struct.pack_into("<Q", segments[GLOBALS], 0, head)
        memory.segments = {k: bytes(v) for k, v in segments.items()}
        before = reader.recognised
        names = set()
        for _ in range(count):
            stack = take_sample(reader)
            assert isinstance(stack, Stack)
            names.add(stack.names)
        assert len(names) == 1
        return names.pop(), reader.recognised - before

    return image.context_addresses, segments, samples


def test_a_loop_keeps_its_plan_through_a_detour_to_its_own_outer_frames() -> None:
    # GIVEN a loop's stack, known to the reader
    contexts, _, samples = _reader_over(["f", "g", "h", "k"])
    innermost, outer = contexts[0], contexts[2]
    assert samples(innermost, 4)[0] == ("f", "g", "h", "k")
    # WHEN R returns to an outer frame of the same path for a while (a recursion climbing
    # back, Sys.time() called from h): its contexts all lie on the loop's chain
    # THEN that stack is walked once and recognised from then on, under the loop's plan
    assert samples(outer, 3) == (("h", "k"), 2)
    # AND back in the loop, its stack is still known: no walk at all
    assert samples(innermost, 3) == (("f", "g", "h", "k"), 3)


def test_a_loop_stack_stays_recognised_across_a_detour_that_makes_new_plans() -> None:
    # GIVEN a loop's stack f g h k, known to the reader, and x, which h calls instead of g
    # in a detour: its context x is not on the loop's chain, and g is not on the detour's
    (x, f, _, h, _), segments, samples = _reader_over(["x", "f", "g", "h", "k"])
    struct.pack_into("<Q", segments[STACK], x - STACK, h)  # x's next context: h
    assert samples(f, 4)[0] == ("f", "g", "h", "k")
    # WHEN the detour lasts: the reader plans for its chain
    assert samples(x, 3)[0] == ("x", "h", "k")
    # THEN back in the loop, the first sample is walked (the plan is the detour's); it lasted
    # two samples, so the reader plans for it again, and that plan knows it: the third is
    # recognised
    assert samples(f, 3) == (("f", "g", "h", "k"), 1)
    # AND without taking the known stacks over, the plan would need a walk of its own first
    assert samples(f, 1) == (("f", "g", "h", "k"), 1)


def test_a_loop_of_two_stacks_recognised_for_long_keeps_both_in_the_plan_after_a_walk() -> None:
    # GIVEN a loop alternating two stacks at the same contexts, a(...) and b(...) called from
    # g: only the innermost call differs, and b's call cell serves nothing else
    (inner, _, outer, k, unused), segments, samples = _reader_over(["a", "g", "h", "k", "b"])
    struct.pack_into("<Q", segments[STACK], k - STACK, 0)  # the chain ends at k
    call_of = _LOOP_LAYOUT.call
    call_a, call_b = (
        struct.unpack_from("<Q", segments[STACK], c - STACK + call_of)[0] for c in (inner, unused)
    )

    def run(call: int, count: int) -> tuple[tuple[str, ...], int]:
        struct.pack_into("<Q", segments[STACK], inner - STACK + call_of, call)
        return samples(inner, count)

    # WHEN both are recognised sample after sample, far longer than the plan's memory
    for _ in range(2):
        run(call_a, 2)
        run(call_b, 2)
    assert all(run(call, 1)[1] == 1 for _ in range(50) for call in (call_a, call_b))
    # AND then one sample must be walked (a detour to an outer frame, not seen before)
    assert samples(outer, 1) == (("h", "k"), 0)
    # THEN both loop stacks are still recognised at once: the walk's bookkeeping counted
    # them as needed lately although they were never walked in all that time
    assert run(call_a, 1) == (("a", "g", "h", "k"), 1)
    assert run(call_b, 1) == (("b", "g", "h", "k"), 1)

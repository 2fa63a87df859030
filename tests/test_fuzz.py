"""Hostile input never crashes xrtop: the stack decoder fed random and adversarial memory,
and the Rprof.out reader fed random and adversarial text.

The decoder's contract: each sample is a valid `Stack` or a `SampleError` (which the
sampler thread counts by kind); nothing else escapes, nothing loops forever, and no read
asks for more than a sample can need (`FakeMemory` fails the test on a trusted length).
The reader's: `RprofFormatError` or a parsed file, never another exception; and what the
writer writes, the reader reads back unchanged.
"""

from __future__ import annotations

import contextlib
import io
import random
import struct
from collections import Counter
from collections.abc import Sequence

import pytest
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

from sampler.errors import RprofFormatError
from sampler.errors import SampleError
from sampler.layouts import CHARSXP
from sampler.layouts import CLOSXP
from sampler.layouts import CTXT_BUILTIN
from sampler.layouts import ENVSXP
from sampler.layouts import INTSXP
from sampler.layouts import LANGSXP
from sampler.layouts import REALSXP
from sampler.layouts import STRSXP
from sampler.layouts import SYMSXP
from sampler.layouts import layout_for
from sampler.model import GC_NAME
from sampler.model import CallTree
from sampler.model import Stack
from sampler.rprof import RprofOptions
from sampler.rprof import RprofWriter
from sampler.rprof import parse_rprof
from sampler.rstack import StackReader

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LAYOUTS = {v: layout_for(v, "EM_X86_64") for v in [(4, 2), (4, 5)]}

names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
    min_size=1,
    max_size=40,
)
frames = st.lists(
    st.one_of(
        names.map(lambda n: Frame(n)),
        names.map(lambda n: Frame(n, CTXT_BUILTIN)),
        st.just(Frame(None, 0)),  # a top-level or loop context: not a frame
    ),
    max_size=60,
)


def outcome(reader: StackReader) -> Stack | SampleError:
    """One sample; only a SampleError may escape (anything else fails the test)."""
    result = sample_or_error(reader)
    assert isinstance(result, (Stack, SampleError))
    return result


# -- well-formed memory decodes exactly --------------------------------------------------------


@FUZZ
@given(frames=frames, version=st.sampled_from(sorted(LAYOUTS)), stride=st.sampled_from([0, 600]))
def test_wellformed_stacks_decode_exactly(
    frames: list[Frame], version: tuple[int, int], stride: int
) -> None:
    layout = LAYOUTS[version]
    image = build_image(frames, layout, stride)
    reader = StackReader(FakeMemory(image.segments), image.binary(), layout, version)
    # The first sample reads live; later ones come from the snapshot of what the first
    # needed: both must name every frame exactly.
    for _ in range(3):
        stack = take_sample(reader)
        assert isinstance(stack, Stack)
        assert stack.names == image.expected


# -- adversarial memory ------------------------------------------------------------------------


def _interesting_words(image_contexts: list[int], heap_size: int) -> st.SearchStrategy[int]:
    """Words a corrupt or torn image plausibly holds: pointers to real structures (cycles,
    self-references), unmapped and misaligned pointers, huge lengths, SEXP type bytes."""
    pointers = [*image_contexts, GLOBALS, HEAP, STACK]
    return st.one_of(
        st.sampled_from(pointers),
        st.integers(0, max(heap_size // 8 - 1, 0)).map(lambda i: HEAP + 8 * i),
        st.integers(0, 2**64 - 1),
        st.sampled_from([0, 1, 7, 2**63, 2**64 - 1, 1 << 40, 10_000, 4097]),
        st.sampled_from([SYMSXP, LANGSXP, CHARSXP, CLOSXP, ENVSXP, STRSXP, INTSXP, REALSXP]),
    )


@FUZZ
@given(data=st.data(), frames=frames, version=st.sampled_from(sorted(LAYOUTS)))
def test_corrupted_images_give_a_stack_or_a_counted_error(
    data: st.DataObject, frames: list[Frame], version: tuple[int, int]
) -> None:
    layout = LAYOUTS[version]
    image = build_image(frames, layout, 0)
    segments = {k: bytearray(v) for k, v in image.segments.items()}
    words = _interesting_words(image.context_addresses, image.heap_size)
    # Overwrite words anywhere: context links (cycles), flags, calls, heads, lengths, names.
    for _ in range(data.draw(st.integers(1, 25), label="mutations")):
        start = data.draw(st.sampled_from(sorted(segments)), label="segment")
        seg = segments[start]
        if len(seg) < 8:
            continue
        at = data.draw(st.integers(0, len(seg) - 8), label="offset")
        if data.draw(st.booleans(), label="aligned"):
            at -= at % 8
        struct.pack_into("<Q", seg, at, data.draw(words, label="word"))
    chaos = random.Random(data.draw(st.integers(0, 2**32), label="seed"))
    rate = data.draw(st.sampled_from([0.0, 0.05, 0.3]), label="chaos")
    memory = FakeMemory({k: bytes(v) for k, v in segments.items()}, chaos=chaos, chaos_rate=rate)
    try:
        reader = StackReader(memory, image.binary(), layout, version)
    except SampleError:
        return  # attach reports this (the process went away or is unreadable)
    reader.validate = data.draw(st.booleans(), label="validate")
    kinds = Counter(
        type(r).__name__ if isinstance(r, SampleError) else "stack"
        for r in (outcome(reader) for _ in range(4))
    )
    assert sum(kinds.values()) == 4


@FUZZ
@given(data=st.data(), version=st.sampled_from(sorted(LAYOUTS)))
def test_random_memory_gives_a_stack_or_a_counted_error(
    data: st.DataObject, version: tuple[int, int]
) -> None:
    layout = LAYOUTS[version]
    heap_words = data.draw(st.integers(8, 600), label="heap words")
    stack_words = data.draw(st.integers(layout.size // 8, 400), label="stack words")
    pointer = st.one_of(
        st.integers(0, heap_words - 1).map(lambda i: HEAP + 8 * i),
        st.integers(0, stack_words - 1).map(lambda i: STACK + 8 * i),
    )
    word = st.one_of(pointer, st.integers(0, 2**64 - 1), st.integers(0, 31), st.just(0))

    def block(n: int) -> bytes:
        values = data.draw(st.lists(word, min_size=n, max_size=n))
        return struct.pack(f"<{n}Q", *values)

    segments = {
        GLOBALS: block(8),
        HEAP: block(heap_words),
        STACK: block(stack_words),
    }
    memory = FakeMemory(
        segments, chaos=random.Random(data.draw(st.integers(0, 99))), chaos_rate=0.05
    )
    binary = build_image([], layout).binary()
    try:
        reader = StackReader(memory, binary, layout, version)
    except SampleError:
        return
    for _ in range(3):
        outcome(reader)


def test_a_cyclic_chain_is_a_torn_sample() -> None:
    # The control for the fuzzing above: a chain that loops must end as a SampleError.
    layout = LAYOUTS[(4, 2)]
    image = build_image([Frame("f"), Frame("g"), Frame("h")], layout)
    stack = bytearray(image.segments[STACK])
    struct.pack_into("<Q", stack, 2 * layout.size, image.context_addresses[0])  # h -> f
    image.segments[STACK] = bytes(stack)
    reader = StackReader(FakeMemory(image.segments), image.binary(), layout, (4, 2))
    result = outcome(reader)
    assert isinstance(result, SampleError)
    assert result.kind == "torn"


class _MovingMemory(FakeMemory):
    """R runs on while a snapshot is read: the head moves right after the first region."""

    def __init__(self, segments: dict[int, bytes], new_head: int) -> None:
        super().__init__(segments)
        self.new_head = new_head

    def read_scatter(self, regions: Sequence[tuple[int, int]]) -> tuple[bytes, list[int]]:
        first, first_offsets = super().read_scatter(regions[:1])
        globals_ = bytearray(self.segments[GLOBALS])
        struct.pack_into("<Q", globals_, 0, self.new_head)
        self.segments[GLOBALS] = bytes(globals_)
        rest, rest_offsets = super().read_scatter(regions[1:])
        offsets = first_offsets + [o + len(first) if o >= 0 else o for o in rest_offsets]
        return first + rest, offsets


@pytest.mark.parametrize("moves", [True, False])
def test_a_snapshot_read_while_r_moves_its_head_is_torn(moves: bool) -> None:
    # GIVEN a reader that reads R_GlobalContext first and last in each snapshot (nonblocking)
    layout = LAYOUTS[(4, 2)]
    image = build_image([Frame("f"), Frame("g"), Frame("h")], layout)
    head = image.context_addresses[1 if moves else 0]
    memory = _MovingMemory(dict(image.segments), new_head=head)
    reader = StackReader(memory, image.binary(), layout, (4, 2))
    reader.set_recheck_head(True)
    # WHEN R's head moves (or not) while the snapshot is read
    got = reader.snapshot()
    # THEN the snapshot says so
    assert reader.snapshot_torn(got) is moves


def test_a_huge_name_length_is_refused() -> None:
    layout = LAYOUTS[(4, 5)]
    image = build_image([Frame("function_name")], layout)
    heap = bytearray(image.segments[HEAP])
    where = bytes(heap).index(b"function_name") - 16  # the CHARSXP's length word
    struct.pack_into("<Q", heap, where, 2**62)
    image.segments[HEAP] = bytes(heap)
    reader = StackReader(FakeMemory(image.segments), image.binary(), layout, (4, 5))
    result = outcome(reader)
    assert isinstance(result, SampleError)


# -- the Rprof.out reader ----------------------------------------------------------------------

rprof_names: st.SearchStrategy[str] = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='\n\r"\0'),
    max_size=20,
).filter(lambda n: n != GC_NAME)
site = st.one_of(
    st.none(),
    st.tuples(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\0"),
            min_size=1,
            max_size=20,
        ),
        st.integers(0, 10**6),
    ),
)


@st.composite
def stacks(draw: st.DrawFn, lines: bool) -> Stack:
    names_ = tuple(draw(st.lists(rprof_names, max_size=12)))
    sites = tuple(draw(st.lists(site, min_size=len(names_) + 1, max_size=len(names_) + 1)))
    return Stack(names_, sites if lines else (), gc=draw(st.booleans()))


@FUZZ
@given(data=st.data(), lines=st.booleans(), gc=st.booleans(), interval=st.integers(1, 10**7))
def test_rprof_round_trip_preserves_stacks(
    data: st.DataObject, lines: bool, gc: bool, interval: int
) -> None:
    written = data.draw(st.lists(stacks(lines), max_size=40))
    out = io.StringIO()
    writer = RprofWriter(out, interval, RprofOptions(lines=lines, gc=gc))
    writer.add_all(written)
    parsed = parse_rprof(out.getvalue())
    assert parsed.interval_us == interval
    # R writes no line for a sample with nothing in it; the GC marker only with gc on.
    expected = [
        Stack(s.names, s.sites, gc=s.gc and gc)
        for s in written
        if s.names or (s.gc and gc) or (lines and s.sites[0] is not None)
    ]
    assert parsed.stacks == expected
    assert len(parsed.stacks) == writer.samples_written


rprof_tokens = st.sampled_from(
    [
        '"f" ',
        '"<GC>" ',
        '"a::b" ',
        '"x[["g"]]" ',
        "1#2 ",
        "9#9 ",
        "#File 1: a.R\n",
        "\n",
        " ",
        '"',
        '""',
        "#",
        "#File x: y\n",
        ":1:2:3:4:",
        "sample.interval=",
        "GC profiling: ",
        "line profiling: ",
        "memory profiling: ",
        "20000",
        "-1",
        "0",
        "\r\n",
        "\x00",
        "é",
    ]
)


@FUZZ
@given(
    header=st.sampled_from(
        [
            "sample.interval=20000\n",
            "line profiling: sample.interval=20000\n",
            "GC profiling: line profiling: sample.interval=1\n",
            "memory profiling: sample.interval=20000\n",
            "memory profiling: line profiling: sample.interval=5\n",
            "sample.interval=0\n",
            "",
        ]
    ),
    body=st.lists(rprof_tokens, max_size=60),
)
def test_rprof_reader_only_raises_format_errors(header: str, body: list[str]) -> None:
    text = header + "".join(body)
    try:
        parsed = parse_rprof(text, "fuzz.out")
    except RprofFormatError as err:
        assert err.path == "fuzz.out"
        assert 1 <= err.line <= text.count("\n") + 1
        return
    assert all(isinstance(s, Stack) for s in parsed.stacks)


@FUZZ
@given(text=st.text(max_size=400))
def test_rprof_reader_survives_any_text(text: str) -> None:
    with contextlib.suppress(RprofFormatError):
        parse_rprof(text, "any.out")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('sample.interval=20000\n"f" \n"g\n"h" \n', 3),  # a cut-off LAST line is read
        ('sample.interval=20000\n"f" 3#4 \n', 2),
        ('line profiling: sample.interval=20000\n"f" 3#4 \n', 2),
        ('sample.interval=20000\n"f" \n\n"g" \n', 3),
        ("Rprof output\n", 1),
    ],
)
def test_rprof_errors_name_the_line(text: str, line: int) -> None:
    with pytest.raises(RprofFormatError) as info:
        parse_rprof(text, "bad.out")
    assert info.value.line == line
    assert f"bad.out:{line}:" in str(info.value)


# -- the compact call tree ---------------------------------------------------------------------


@FUZZ
@given(
    paths=st.lists(
        st.tuples(st.lists(st.sampled_from("abcdef"), max_size=12), st.integers(1, 5)),
        max_size=60,
    )
)
def test_call_tree_matches_a_plain_tree(paths: list[tuple[list[str], int]]) -> None:
    # The flat storage (one child inline, dicts only for several) must behave exactly like
    # the obvious nested-dict tree.
    tree = CallTree()
    plain: dict[tuple[str, ...], list[int]] = {(): [0, 0]}  # path -> [total, own]
    for keys, count in paths:
        tree.add_path(keys, count)
        plain[()][0] += count
        for depth in range(1, len(keys) + 1):
            plain.setdefault(tuple(keys[:depth]), [0, 0])[0] += count
        plain[tuple(keys)][1] += count
    tree.check()
    seen: dict[tuple[str, ...], int] = {}
    todo: list[tuple[tuple[str, ...], int]] = [((), CallTree.ROOT)]
    while todo:
        path, node = todo.pop()
        seen[path] = node
        kids = tree.children[node]
        assert sorted(kids) == sorted(p[-1] for p in plain if p[:-1] == path and p)
        assert bool(kids) == any(p[:-1] == path and p for p in plain)
        for key, child in kids.items():
            assert kids.get(key) == child and kids[key] == child
            assert tree.parent[child] == node and tree.key[child] == key
            todo.append(((*path, str(key)), child))
        assert kids.get("zz") is None
    assert set(seen) == set(plain)
    for path, (total, own) in plain.items():
        assert (tree.total[seen[path]], tree.own[seen[path]]) == (total, own)
    assert len(tree) == len(plain)

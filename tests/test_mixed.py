"""Mixed stacks (sampler.mixed): spelling, evaluator frames, interleaving on synthetic frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sampler import mixed
from sampler.mixed import UNWIND_STOPPED
from sampler.mixed import interleave
from sampler.mixed import is_evaluator
from sampler.mixed import is_native
from sampler.mixed import native_label
from sampler.mixed import native_name
from sampler.mixed import shown

C_STACK = (0x7000, 0x9000)  # the C stack's [low, high) in these synthetic stacks
NODE = 0x100  # an address on R's node stack (off the C stack)


def merged(
    r_names: list[str],
    r_contexts: list[int],
    natives: list[tuple[str, int]],
    complete: bool = True,
) -> list[str]:
    """The interleaved stack's names, innermost first."""
    names = [native_name(label) for label, _ in natives]
    slots = interleave(r_contexts, [cfa for _, cfa in natives], names, C_STACK, complete=complete)
    return [
        (UNWIND_STOPPED if index < 0 else names[index]) if native else r_names[index]
        for native, index in slots
    ]


def test_spelling_round_trips_and_is_recognised() -> None:
    assert native_name("my_c_fun") == "<Native:my_c_fun>"
    assert native_label(native_name("libR.so+0x15a330")) == "libR.so+0x15a330"
    assert is_native("<Native:Rf_eval>") and not is_native("Native") and not is_native("f")
    assert is_evaluator("<Native:Rf_eval>") and is_evaluator("<Native:bcEval>")
    assert not is_evaluator("<Native:my_c_fun>") and not is_evaluator("Rf_eval")


def test_native_frames_go_between_the_r_frames_that_ran_them() -> None:
    # outer_r's context is a local of applyClosure (its frame: [0x7400, 0x7500)); .C runs in
    # R's machinery called from there, my_c_fun and my_leaf innermost.
    natives = [
        ("my_leaf", 0x7100),
        ("my_c_fun", 0x7200),
        ("do_dotCode", 0x7300),
        ("Rf_eval", 0x7400),
        ("applyClosure", 0x7500),
        ("main", 0x7600),
    ]
    assert merged(["outer_r"], [0x7450], natives) == [
        "<Native:my_leaf>",
        "<Native:my_c_fun>",
        "<Native:do_dotCode>",
        "<Native:Rf_eval>",
        "outer_r",
        "<Native:applyClosure>",
        "<Native:main>",
    ]


def test_each_r_frame_lands_in_the_frame_holding_its_context() -> None:
    natives = [
        ("leaf", 0x7100),
        ("applyClosure", 0x7200),  # holds g's context
        ("middle", 0x7300),
        ("applyClosure", 0x7400),  # holds f's context
        ("main", 0x7500),
    ]
    got = merged(["g", "f"], [0x7150, 0x7390], natives)
    assert got == [
        "<Native:leaf>",
        "g",
        "<Native:applyClosure>",
        "<Native:middle>",
        "f",
        "<Native:applyClosure>",
        "<Native:main>",
    ]
    # A context exactly at a CFA belongs to the caller's frame (its slice starts there).
    assert merged(["g"], [0x7100], natives[:2]) == ["<Native:leaf>", "g", "<Native:applyClosure>"]


def test_node_stack_contexts_belong_to_the_byte_code_loop_between_their_neighbours() -> None:
    # R >= 4.4: h and g were called from byte code (contexts on the node stack), run by the
    # bcEval between f's C-stack context (outer) and the innermost native code.
    natives = [
        ("do_summary", 0x7100),
        ("bcEval", 0x7200),
        ("bcEval", 0x7300),  # an inner loop (a promise's code): the outermost one takes them
        ("R_execClosure", 0x7400),
        ("applyClosure", 0x7500),  # holds f's context
        ("main", 0x7600),
    ]
    got = merged(["h", "g", "f"], [NODE + 32, NODE, 0x7480], natives)
    assert got == [
        "<Native:do_summary>",
        "<Native:bcEval>",
        "h",
        "g",
        "<Native:bcEval>",
        "<Native:R_execClosure>",
        "f",
        "<Native:applyClosure>",
        "<Native:main>",
    ]


def test_node_stack_contexts_without_a_named_loop_sit_beside_their_outer_neighbour() -> None:
    # Stripped libR: bcEval has no name; g still comes right inside f, in R's order.
    natives = [("libR.so+0x1000", 0x7100), ("libR.so+0x2000", 0x7200), ("main", 0x7300)]
    got = merged(["g", "f"], [NODE, 0x7150], natives)
    assert got == ["<Native:libR.so+0x1000>", "g", "f", "<Native:libR.so+0x2000>", "<Native:main>"]
    # No C-stack context at all: after every native frame found.
    assert merged(["g"], [NODE], natives[:1]) == ["<Native:libR.so+0x1000>", "g"]


def test_where_unwinding_stopped_the_marker_comes_before_the_outer_r_frames() -> None:
    natives = [("leaf", 0x7100), ("applyClosure", 0x7200)]
    got = merged(["g", "f"], [0x7150, 0x8800], natives, complete=False)
    assert got == ["<Native:leaf>", "g", "<Native:applyClosure>", UNWIND_STOPPED, "f"]
    assert merged(["f"], [0x7150], [], complete=False) == [UNWIND_STOPPED, "f"]


def test_shown_hides_native_frames_and_the_evaluators_apart() -> None:
    names = [
        "<Native:leaf>",
        "<Native:libR.so+0x102400>",  # unnamed in libR, inside the innermost R frame: kept
        "g",
        "<Native:Rf_eval>",
        "<Native:libR.so+0x159602>",  # unnamed in libR between R frames: the evaluator's
        UNWIND_STOPPED,
        "f",
        "<Native:main>",
        UNWIND_STOPPED,  # outermost: only R's start-up is missing
    ]
    assert shown(names, native=True, evaluator=True) == list(range(9))
    assert shown(names, native=True, evaluator=False) == [0, 1, 2, 5, 6]
    assert shown(names, native=False, evaluator=False) == [2, 6]
    assert shown(names, native=False, evaluator=True) == [2, 6]


@given(
    st.lists(st.integers(0x7000, 0x8FFF), max_size=8, unique=True),
    st.lists(st.one_of(st.integers(0x6F00, 0x9100), st.just(NODE)), max_size=8),
    st.booleans(),
)
def test_interleaving_keeps_both_orders_and_every_frame(
    cfas: list[int], contexts: list[int], complete: bool
) -> None:
    cfas.sort()
    names = [native_name("bcEval" if i % 3 == 1 else f"n{i}") for i in range(len(cfas))]
    slots = interleave(contexts, cfas, names, C_STACK, complete=complete)
    assert [i for native, i in slots if native and i >= 0] == list(range(len(cfas)))
    assert [k for native, k in slots if not native] == list(range(len(contexts)))
    assert ((True, -1) in slots) is not complete


def _shown_plainly(names: list[str], native: bool, evaluator: bool) -> list[int]:
    """`shown`'s rule, name by name, with nothing remembered (the oracle below)."""
    if native and evaluator:
        return list(range(len(names)))
    first_r = next((i for i, name in enumerate(names) if not is_native(name)), len(names))
    keep = []
    for i, name in enumerate(names):
        if is_native(name):
            if not native or is_evaluator(name):
                continue
            if name == UNWIND_STOPPED and i == len(names) - 1:
                continue
            if i > first_r and native_label(name).startswith("libR.so+"):
                continue
        keep.append(i)
    return keep


_NAME_POOL = [
    "f",
    "g",
    "<Native:leaf>",
    "<Native:Rf_eval>",
    "<Native:bcEval>",
    "<Native:libR.so+0x159602>",
    "<Native:libother.so+0x10>",
    UNWIND_STOPPED,
]


@given(
    st.lists(st.sampled_from(_NAME_POOL), max_size=12),
    st.booleans(),
    st.booleans(),
    st.integers(1, 4),
)
def test_shown_gives_what_the_rule_gives_name_by_name_whatever_it_remembers(
    names: list[str], native: bool, evaluator: bool, bound: int
) -> None:
    """`shown` remembers each name's kind (sampler.mixed._KINDS, bounded): with any bound,
    it keeps the frames the rule keeps, and never holds more kinds than the bound."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mixed, "_MAX_KINDS", bound)
        patch.setattr(mixed, "_KINDS", {})
        for _ in range(2):  # forgotten, then (some) remembered
            assert shown(names, native=native, evaluator=evaluator) == _shown_plainly(
                names, native, evaluator
            )
            assert len(mixed._KINDS) <= bound

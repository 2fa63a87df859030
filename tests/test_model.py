"""Pure logic of the data model: interning, aggregation, recursion, the call tree."""

from __future__ import annotations

from sampler.model import Aggregate
from sampler.model import SampleLog
from sampler.model import Stack


def log_of(*stacks: tuple[str, ...], idle: set[int] | None = None) -> SampleLog:
    idle = idle or set()
    return SampleLog.from_stacks((Stack(s, idle=i in idle) for i, s in enumerate(stacks)), 10_000)


def test_stacks_are_interned_and_samples_kept_in_order() -> None:
    log = log_of(("f", "g"), ("h",), ("f", "g"))
    assert len(log) == 3
    assert len(log.stacks) == 2
    assert [s.names for s in log.iter_stacks()] == [("f", "g"), ("h",), ("f", "g")]
    assert log.index_at_time(0.015) == 2


def test_recursion_counts_once_per_sample_in_total() -> None:
    # GIVEN samples of a recursive function
    log = log_of(("fib", "fib", "fib", "main"), ("fib", "main"), ("other", "main"))
    # WHEN aggregated
    agg = Aggregate(log)
    agg.update()
    # THEN totals never exceed the sample count, own counts the innermost frame
    assert agg.samples == 3
    assert agg.total["fib"] == 2
    assert agg.total["main"] == 3
    assert agg.own["fib"] == 2
    assert agg.own["other"] == 1
    assert all(v <= agg.samples for v in agg.total.values())
    agg.tree.check()
    # AND the tree has main -> fib -> fib -> fib, and main -> other
    path = agg.tree.hottest_path()
    assert [agg.tree.key[n] for n in path[1:]] == ["main", "fib", "fib", "fib"]


def test_update_is_incremental_and_equals_a_fresh_aggregate() -> None:
    log = log_of(("a", "b"), ("c", "b"))
    agg = Aggregate(log)
    agg.update()
    log.add(Stack(("a", "b")), 1.0)
    log.add(Stack(("d",)), 1.1)
    assert agg.update() == 2
    fresh = Aggregate(log)
    fresh.update()
    assert agg.own == fresh.own and agg.total == fresh.total
    assert agg.tree.total == fresh.tree.total


def test_idle_samples_are_left_out_unless_asked() -> None:
    log = log_of(("work",), ("Sys.sleep", "wait"), ("work",), idle={1})
    busy = Aggregate(log)
    busy.update()
    assert busy.samples == 2 and busy.idle == 1 and "Sys.sleep" not in busy.total
    everything = Aggregate(log, include_idle=True)
    everything.update()
    assert everything.samples == 3 and everything.total["wait"] == 1


def test_by_line_splits_a_function_by_the_line_it_runs() -> None:
    stacks = [
        Stack(("f", "main"), sites=(("a.R", 3), ("a.R", 10), None)),
        Stack(("f", "main"), sites=(("a.R", 4), ("a.R", 10), None)),
    ]
    agg = Aggregate(SampleLog.from_stacks(stacks, 10_000), by_line=True)
    agg.update()
    assert agg.own[("f", "a.R", 3)] == 1 and agg.own[("f", "a.R", 4)] == 1
    assert agg.total[("main", "a.R", 10)] == 2
    rows = {r.key: r for r in agg.rows()}
    assert rows[("f", "a.R", 3)].location == ("a.R", 3)


def test_gc_samples_count_as_innermost_gc_frame() -> None:
    log = SampleLog.from_stacks([Stack(("f",), gc=True), Stack(("f",))], 10_000)
    agg = Aggregate(log)
    agg.update()
    assert agg.own["<GC>"] == 1 and agg.own["f"] == 1 and agg.total["f"] == 2

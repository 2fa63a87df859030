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


def mixed_log() -> SampleLog:
    """Samples with idle, GC, recursion and lines, each stack several times."""
    main = ("main.R", 1)
    stacks = [
        Stack(("f", "g", "main"), sites=(("a.R", 3), ("a.R", 9), ("m.R", 2), main)),
        Stack(("f", "g", "main"), sites=(("a.R", 4), ("a.R", 9), ("m.R", 2), main)),
        Stack(("fib", "fib", "main"), sites=(("b.R", 1), ("b.R", 2), None, main)),
        Stack(("f", "main"), gc=True),
        Stack(("Sys.sleep", "main"), idle=True),
        Stack(()),
    ]
    return SampleLog.from_stacks([stacks[i % 7 % 6] for i in range(60)], 10_000)


def counts_of(agg: Aggregate) -> tuple[object, ...]:
    """Everything an aggregate counts; tree nodes by their path of keys (node ids follow
    the order stacks were added in)."""
    tree = agg.tree
    paths: list[tuple[object, ...]] = [()]
    for n in range(1, len(tree)):
        paths.append((*paths[tree.parent[n]], tree.key[n]))
    nodes = {paths[n]: (tree.total[n], tree.own[n]) for n in range(len(tree))}
    rows = {r.key: (r.own, r.total, r.location) for r in agg.rows()}
    return (agg.samples, agg.idle, agg.gc, dict(agg.own), dict(agg.total), rows, nodes)


def test_recounted_equals_a_fresh_aggregate_counted_that_way() -> None:
    log = mixed_log()
    for by_line in (False, True):
        for idle in (False, True):
            fresh = Aggregate(log, start=5, by_line=by_line, include_idle=idle)
            fresh.update()
            base = Aggregate(log, start=5, by_line=not by_line, include_idle=not idle)
            base.update(30)
            base.update()  # taken in two steps
            other = base.recounted(by_line=by_line, include_idle=idle)
            assert other.consumed == len(log) and (other.by_line, other.include_idle) == (
                by_line,
                idle,
            )
            assert counts_of(other) == counts_of(fresh)


def test_work_folded_ahead_in_slices_gives_what_reading_gives() -> None:
    log = mixed_log()
    read, ahead = Aggregate(log, by_line=True), Aggregate(log, by_line=True)
    read.update()
    ahead.update()
    slices = 0
    while ahead.fold_due(2):
        slices += 1
    assert slices >= 3, "both the function counts and the tree, two stacks at a time"
    assert counts_of(ahead) == counts_of(read)
    assert not ahead.fold_due(2)


def test_rows_follow_new_samples_after_the_counts_were_read() -> None:
    log = log_of(("a", "b"))
    agg = Aggregate(log)
    agg.update()
    assert {r.key: r.total for r in agg.rows()} == {"a": 1, "b": 1}
    log.add(Stack(("c", "b")), 1.0)
    agg.update()
    assert agg.total["b"] == 2  # the counts read before the rows
    assert {r.key: r.total for r in agg.rows()} == {"a": 1, "b": 2, "c": 1}

"""Attaching to real R processes of every version the machine offers, plain and in a
container-like mount namespace, and reading their stacks."""

from __future__ import annotations

import time
from collections import Counter

from conftest import REnv
from conftest import RLauncher
from conftest import expected_version
from conftest import sample

from sampler.target import attach


def test_attach_finds_the_mapped_libr_and_version(r_env: REnv, r_launcher: RLauncher) -> None:
    # GIVEN an R workload in this environment
    run = r_launcher.start("busy.R", "60", env=r_env)
    # WHEN xrtop attaches
    target = attach(run.pid)
    # THEN it opened the very libR.so the process maps (same inode as the file in its root)
    mapped = (run.root / "usr/lib/R/lib/libR.so").stat()
    opened = __import__("os").stat(target.binary.opened_as)
    assert (opened.st_dev, opened.st_ino) == (mapped.st_dev, mapped.st_ino)
    # AND it detected the R version that environment runs
    want = expected_version(r_env)
    if want is not None:
        assert target.version[:2] == want
    assert target.layout.name == ("4.4+" if target.version[:2] >= (4, 4) else "4.0-4.3")


def test_stacks_name_the_running_functions(r_env: REnv, r_launcher: RLauncher) -> None:
    run = r_launcher.start("busy.R", "60", env=r_env)
    log = sample(attach(run.pid), 1.5)
    stacks = [s for s in log.iter_stacks() if s.names]
    assert len(stacks) > 100
    # Nearly every sample is fib... under middle under outer: the exact chain R runs. The
    # rest is the loop's own deadline test at top level (primitives: no frame).
    in_outer = [list(s.names) for s in stacks if s.names[-1] == "outer"]
    assert len(in_outer) > 0.9 * len(stacks)
    for names in in_outer:
        assert names[-2:] == ["middle", "outer"] or names == ["outer"], names
        assert set(names[:-2]) <= {"fib"}, names
    depths = Counter(len(s.names) for s in stacks)
    assert max(depths) >= 10  # fib(15) recursion is visible


def test_target_is_left_running_and_untraced(r_env: REnv, r_launcher: RLauncher) -> None:
    run = r_launcher.start("busy.R", "60", env=r_env)
    sample(attach(run.pid), 0.5, rate=1000)
    assert run.tracer() == 0
    time.sleep(0.1)
    assert run.state() in ("R", "S")

"""`xrtop diff BASE NEW`: what changed between two profiles (Rprof.out files, R's own or
xrtop's). With `--print`, the table of the largest changes in total share goes to standard
output (no terminal needed); otherwise the Top, Tree and Flame views of NEW open with
each function's change against BASE (`xrtop.diff_app`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sampler.diff import change_table
from sampler.diff import function_changes
from sampler.model import Aggregate
from xrtop.progress import read_profile


def cmd_diff(args: argparse.Namespace) -> int:
    """Print the table of changes, or open the diff views."""
    base_path, new_path = Path(args.base), Path(args.new)
    base, new = read_profile(base_path), read_profile(new_path)
    if args.print_table:
        before, after = Aggregate(base.to_log()), Aggregate(new.to_log())
        before.update()
        after.update()
        print(
            f"# {new_path.name} ({after.samples} samples) against "
            f"{base_path.name} ({before.samples} samples), shares in %, changes in "
            "percentage points"
        )
        print(change_table(function_changes(before, after)), end="")
        return 0
    from xrtop.live import run_diff  # Textual loads only for the views

    return run_diff(base_path, base, new_path, new)

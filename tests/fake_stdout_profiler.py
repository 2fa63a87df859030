"""A stand-in for a profiler that writes its Rprof-format profile to standard output, as
xrprof does (for bench/run.py's --other): RATE samples a second, 70 % in work_a, until
SIGTERM, which cuts its last line off as a killed profiler would.

Usage: python fake_stdout_profiler.py RATE
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType


def main() -> None:
    rate = float(sys.argv[1])
    out = sys.stdout

    def cut_off(signum: int, frame: FrameType | None) -> None:
        out.write('"work_')  # a sample half written
        out.flush()
        sys.exit(0)

    signal.signal(signal.SIGTERM, cut_off)
    out.write(f"sample.interval={round(1e6 / rate)}\n")
    taken = 0
    while True:
        out.write('"work_a" "main" \n' if taken % 10 < 7 else '"work_b" "main" \n')
        out.flush()
        taken += 1
        time.sleep(1 / rate)


if __name__ == "__main__":
    main()

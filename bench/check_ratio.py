# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""CI guard: prepare+submit must stay within the target ratio to the floor.

Runs `bench_prepare_submit` at 10k jobs of the realistic shape (medians of
3 fresh processes) and exits 1 when ``(prepare + submit) / floor`` exceeds
the target (3x) by more than the allowed margin (50 %), i.e. when the ratio
is above 4.5. The ratio is measured in one run on one machine, so it does
not depend on how fast the CI runner is; by default it is the ratio of CPU
times (``cpu_ratio_to_floor``), which other work on the machine moves far
less than the wall-clock one (``--clock wall``; ``doc/performance.md``).
Exit 2 means the benchmark itself failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_prepare_submit import run_bench

TARGET_RATIO = 3.0
MARGIN = 0.5
SHAPE = "realistic"
CLOCK = "cpu"
_RATIO_KEYS = {"cpu": "cpu_ratio_to_floor", "wall": "ratio_to_floor"}


def within_limit(ratio: float, target: float = TARGET_RATIO, margin: float = MARGIN) -> bool:
    """Return whether a measured ratio passes the check.

    Parameters
    ----------
    ratio : `float`
        Measured (prepare + submit) / floor.
    target : `float`, optional
        Target ratio.
    margin : `float`, optional
        Allowed excess over the target, as a fraction of it.

    Returns
    -------
    ok : `bool`
        `True` if ``ratio <= target * (1 + margin)``.
    """
    return ratio <= target * (1 + margin)


def main(argv: list[str] | None = None) -> int:
    """Run the check.

    Parameters
    ----------
    argv : `list` [`str`], optional
        Command-line arguments.

    Returns
    -------
    status : `int`
        0 within the limit, 1 above it, 2 if the benchmark failed.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=float, default=TARGET_RATIO)
    parser.add_argument("--margin", type=float, default=MARGIN)
    parser.add_argument("--shape", choices=("realistic", "short"), default=SHAPE)
    parser.add_argument("--clock", choices=tuple(_RATIO_KEYS), default=CLOCK, help="CPU or wall-clock ratio")
    args = parser.parse_args(argv)
    limit = args.target * (1 + args.margin)
    try:
        (line,) = list(run_bench([args.jobs], args.repeats, shape=args.shape))
    except (RuntimeError, OSError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(line))
    ratio = line[_RATIO_KEYS[args.clock]]
    ok = within_limit(ratio, args.target, args.margin)
    verdict = "OK" if ok else "FAIL"
    where = f"{args.jobs} {args.shape} jobs, {args.clock} time"
    print(f"{verdict}: prepare+submit = {ratio:.2f} x floor at {where} (limit {limit:.2f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

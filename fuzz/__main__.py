"""Run the fuzz targets with Hypothesis for a while: ``python -m fuzz --minutes N [--target NAME]``.

The example database lives in ``.hypothesis/fuzz`` and is kept between runs;
failing inputs are saved there and replayed by ``tests/test_fuzz_replay.py``.
"""

from __future__ import annotations

import argparse
import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

import rans

from . import TARGETS

DATABASE = DirectoryBasedExampleDatabase(".hypothesis/fuzz")


def hypothesis_test(name: str, examples: int):
    """A Hypothesis test of target ``name`` that fails on anything but success or a RansError."""
    target = TARGETS[name]

    def run(data: bytes) -> None:
        try:
            target(data)
        except rans.RansError:
            pass

    run.__name__ = run.__qualname__ = f"fuzz_{name}"
    run._hypothesis_internal_add_digest = name.encode()  # one database key per target
    return settings(
        max_examples=examples,
        deadline=5000,
        database=DATABASE,
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )(given(st.binary(max_size=8192))(run))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--target", choices=sorted(TARGETS), action="append")
    args = parser.parse_args(argv)
    names = args.target or sorted(TARGETS)
    deadline = time.monotonic() + 60 * args.minutes
    counts = {name: 0 for name in names}
    failures: dict[str, str] = {}
    while time.monotonic() < deadline and len(failures) < len(names):
        for name in names:
            if name in failures or time.monotonic() >= deadline:
                continue
            try:
                hypothesis_test(name, 200)()
            except Exception as e:  # noqa: BLE001 - a failing example; Hypothesis has saved it
                failures[name] = f"{type(e).__name__}: {e}"
            counts[name] += 200
    print(f"{'target':12} {'examples':>10}  result")
    for name in names:
        print(f"{name:12} {counts[name]:>10}  {failures.get(name, 'ok')[:100]}")
    print(f"{sum(counts.values())} examples, {len(failures)} failing target(s); database .hypothesis/fuzz")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

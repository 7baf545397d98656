"""Run the fuzz targets: ``python -m fuzz [--engine hypothesis|atheris] [--minutes N] [--runs N] [--target NAME]``.

Hypothesis (the default) keeps its example database in ``.hypothesis/fuzz``
between runs; atheris (``pip install atheris``) keeps a corpus per target
in ``.hypothesis/atheris/NAME/corpus`` and its crashing inputs in
``.hypothesis/atheris/NAME/crashes``. ``tests/test_fuzz_replay.py`` replays
both as ordinary tests. The summary gives each target's executions,
failures, time, executions per second and coverage (``--coverage``: line
coverage of ``rans/`` under Hypothesis, a lower bound, since the lines run
at import, before tracing starts, count as missed; edges under atheris,
always);
``--json PATH`` writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Callable

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from .targets import SEED_INPUTS, TARGETS, checked

DATABASE = DirectoryBasedExampleDatabase(".hypothesis/fuzz")
ATHERIS_DIR = os.path.join(".hypothesis", "atheris")
BATCH = 200
"""Hypothesis examples per call of a target's test; targets take turns in batches."""


def hypothesis_test(name: str, examples: int, counter: list[int] | None = None, derandomize: bool = False) -> Callable[[], None]:
    """A Hypothesis test of target ``name`` that fails on anything but success or a RansError.

    It first replays the target's saved examples, then draws ``examples`` new
    ones: fresh ones (campaigns), or with ``derandomize`` the same on every run
    (the test suite's smoke test: a seed fixed by the name, the database kept).
    """
    run = checked(name, counter)
    run.__name__ = run.__qualname__ = f"fuzz_{name}"
    run._hypothesis_internal_add_digest = name.encode()  # one database key per target
    test = settings(
        max_examples=examples,
        deadline=5000,
        database=DATABASE,
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )(given(st.binary(max_size=8192))(run))
    return seed(zlib.crc32(name.encode()))(test) if derandomize else test


@dataclass
class Result:
    """One target's share of a run."""

    executions: int = 0
    seconds: float = 0.0
    failure: str | None = None
    coverage: str | None = None

    @property
    def rate(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0


def _line_coverage(names: list[str]) -> dict[str, Any]:
    """A ``coverage.Coverage`` of ``rans/`` (the GPU and CLI modules left out) per target."""
    try:
        import coverage
    except ImportError:
        raise SystemExit("--coverage needs the coverage package: pip install coverage") from None
    omit = ["*/rans/gpu/*", "*/rans/__main__.py", "*/rans/selftest.py"]
    return {name: coverage.Coverage(data_file=None, source=["rans"], omit=omit) for name in names}


def _percent(cov: Any) -> str:
    import io

    return f"{cov.report(file=io.StringIO()):.1f}% lines"


def run_hypothesis(names: list[str], deadline: float, runs: int | None, with_coverage: bool) -> dict[str, Result]:
    """Targets take turns in batches of :data:`BATCH` examples until the time or ``runs`` is used up."""
    results = {name: Result() for name in names}
    counters = {name: [0] for name in names}
    tracers = _line_coverage(names) if with_coverage else {}

    def active(name: str) -> bool:
        r = results[name]
        return r.failure is None and (runs is None or counters[name][0] < runs) and time.monotonic() < deadline

    while any(active(name) for name in names):
        for name in filter(active, names):
            test = hypothesis_test(name, BATCH, counters[name])
            start = time.monotonic()
            if name in tracers:
                tracers[name].start()
            try:
                test()
            except Exception as e:  # noqa: BLE001 - a failing example; Hypothesis has saved it
                results[name].failure = f"{type(e).__name__}: {e}"
            finally:
                if name in tracers:
                    tracers[name].stop()
                results[name].seconds += time.monotonic() - start
            results[name].executions = counters[name][0]
    for name, cov in tracers.items():
        results[name].coverage = _percent(cov)
    if tracers:
        total = _line_coverage(["all"])["all"]
        for cov in tracers.values():
            total.get_data().update(cov.get_data())
        results["(all)"] = Result(coverage=_percent(total))
    return results


def run_atheris(names: list[str], seconds: float | None, runs: int | None) -> dict[str, Result]:
    """Each target in its own atheris process (libFuzzer exits when done), one after another."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        raise SystemExit(
            "--engine atheris needs atheris (pip install atheris); where pip finds no wheel for this Python "
            "and platform, it builds atheris from source, which needs clang with libFuzzer"
        ) from None
    results = {}
    share = None if seconds is None else max(1, int(seconds / len(names)))
    for name in names:
        results[name] = _atheris_one(name, share, runs)
    return results


def _atheris_one(name: str, seconds: int | None, runs: int | None) -> Result:
    directory = os.path.join(ATHERIS_DIR, name)
    corpus, crashes = os.path.join(directory, "corpus"), os.path.join(directory, "crashes")
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(crashes, exist_ok=True)
    for i, data in enumerate(SEED_INPUTS.get(name, [])):
        with open(os.path.join(corpus, f"seed-{i}"), "wb") as f:
            f.write(data)
    flags = [f"-artifact_prefix={crashes}{os.sep}", "-max_len=8192", "-print_final_stats=1", "-rss_limit_mb=4096"]
    if runs is not None:
        flags.append(f"-runs={runs}")
    if seconds is not None:
        flags.append(f"-max_total_time={seconds}")
    command = [sys.executable, "-m", "fuzz.atheris_engine", name, *flags, corpus]
    start = time.monotonic()
    process = subprocess.run(command, capture_output=True, text=True, errors="replace")
    elapsed = time.monotonic() - start
    log = process.stderr
    done = re.findall(r"Done (\d+) runs in (\d+) second", log)
    executions = int(done[-1][0]) if done else int((re.findall(r"stat::number_of_executed_units: (\d+)", log) or ["0"])[-1])
    edges = re.findall(r"cov: (\d+) ft: (\d+)", log)
    result = Result(executions, elapsed, coverage=f"{edges[-1][0]} edges, {edges[-1][1]} features" if edges else None)
    if process.returncode != 0:
        lines = [line for line in log.splitlines() if re.search(r"error|exception|assertion", line, re.IGNORECASE)]
        result.failure = (lines[-1] if lines else f"exit status {process.returncode}") + f" (inputs in {crashes})"
    return result


def summary(results: dict[str, Result], elapsed: float) -> str:
    lines = [f"{'target':14} {'executions':>11} {'failures':>8} {'seconds':>8} {'exec/s':>8}  coverage"]
    for name, r in results.items():
        if name == "(all)":
            lines.append(f"{name:14} {'':>11} {'':>8} {'':>8} {'':>8}  {r.coverage}")
            continue
        lines.append(
            f"{name:14} {r.executions:>11} {int(r.failure is not None):>8} {r.seconds:>8.1f} {r.rate:>8.0f}  {r.coverage or '-'}"
        )
        if r.failure:
            lines.append(f"    {r.failure[:300]}")
    total = sum(r.executions for r in results.values())
    failing = sum(r.failure is not None for r in results.values())
    lines.append(f"{total} executions in {elapsed:.1f} s ({total / elapsed:.0f}/s), {failing} failing target(s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=("hypothesis", "atheris"), default="hypothesis")
    parser.add_argument("--minutes", type=float, help="time for all targets together (default 1 unless --runs)")
    parser.add_argument("--runs", type=int, help="executions per target")
    parser.add_argument("--target", choices=sorted(TARGETS), action="append", help="repeatable; default every target")
    parser.add_argument("--coverage", action="store_true", help="line coverage of rans/ (Hypothesis engine)")
    parser.add_argument("--json", metavar="PATH", help="also write the summary as JSON")
    args = parser.parse_args(argv)
    names = args.target or list(TARGETS)
    minutes = args.minutes if args.minutes is not None or args.runs is not None else 1.0
    start = time.monotonic()
    if args.engine == "atheris":
        results = run_atheris(names, None if minutes is None else 60 * minutes, args.runs)
    else:
        deadline = start + 60 * minutes if minutes is not None else float("inf")
        results = run_hypothesis(names, deadline, args.runs, args.coverage)
    elapsed = time.monotonic() - start
    print(summary(results, elapsed))
    if args.json:
        document = {
            "command": "python -m fuzz " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
            "engine": args.engine,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(elapsed, 1),
            "executions": sum(r.executions for r in results.values()),
            "failing_targets": sum(r.failure is not None for r in results.values()),
            "targets": {name: {**asdict(r), "exec_per_s": round(r.rate, 1)} for name, r in results.items()},
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(document, f, indent=2)
            f.write("\n")
    return 1 if any(r.failure for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

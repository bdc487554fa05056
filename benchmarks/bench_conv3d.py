"""Ours vs torch on a backend's suite (or chosen cases), side by side in one process.

Usage: python benchmarks/bench_conv3d.py [--backend cpu|cuda] [--full] [--case NAME ...] [--repeat N]
[--threads N] [--settle SECONDS] [--json FILE]
"""
import argparse
import json

from numba_conv3d.bench_cases import FULL_SUITES, SUITES
from numba_conv3d.benchmark import SETTLE_SECONDS, format_report, ratio_summary, run_suite
from numba_conv3d.environment import describe


def main():
    """Parse the command line, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(SUITES), default="cpu")
    parser.add_argument("--full", action="store_true", help="the full suite: every class of issue 4")
    parser.add_argument("--case", action="append", help="a case name of the backend's suite; repeatable")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                        help="seconds of pause before each timed run (default %(default)s)")
    parser.add_argument("--json", help="also write the results and the environment to this file")
    args = parser.parse_args()
    cases = {case.name: case for case in (FULL_SUITES if args.full else SUITES)[args.backend]}
    unknown = set(args.case or ()) - set(cases)
    if unknown:
        parser.error(f"not in the {args.backend} suite: {sorted(unknown)}; known: {sorted(cases)}")
    chosen = [cases[name] for name in args.case] if args.case else list(cases.values())
    peaks, results = run_suite(chosen, repeat=args.repeat, threads=args.threads, backend=args.backend,
                               settle=args.settle)
    print(format_report(peaks, results))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"environment": describe(), "peak_gflops": peaks,
                       "results": [r.as_dict() for r in results],
                       "summary": ratio_summary(results)}, out, indent=2)


if __name__ == "__main__":
    main()

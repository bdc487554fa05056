"""Ours vs torch on the default suite (or chosen cases), side by side in one process.

Usage: python benchmarks/bench_conv3d.py [--case NAME ...] [--repeat N] [--threads N]
"""
import argparse

from numba_conv3d.benchmark import DEFAULT_SUITE, format_report, run_suite


def main():
    cases = {case.name: case for case in DEFAULT_SUITE}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=sorted(cases), help="repeatable")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    chosen = [cases[name] for name in args.case] if args.case else list(DEFAULT_SUITE)
    print(format_report(*run_suite(chosen, repeat=args.repeat, threads=args.threads)))


if __name__ == "__main__":
    main()

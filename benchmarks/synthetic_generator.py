"""Benchmark of the synthetic generator: rows per second and peak memory.

    uv run python benchmarks/synthetic_generator.py [--persons N] [--format csv|parquet]

Prints figures; asserts nothing (speed is measured here, never in timed tests).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthetic.generate import generate  # noqa: E402
from synthetic.params import SynthParams  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=200_000)
    ap.add_argument("--format", choices=("csv", "parquet"), default="parquet")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = generate(SynthParams(persons=args.persons), Path(tmp), fmt=args.format)
        seconds = time.perf_counter() - t0
    rows = sum(summary["rows"].values())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"persons            {args.persons:>14,}")
    print(f"rows written       {rows:>14,}  ({args.format})")
    print(f"seconds            {seconds:>14.1f}")
    print(f"rows per second    {rows / seconds:>14,.0f}")
    print(f"peak memory (MiB)  {peak_mib:>14,.0f}")
    print(f"projected for 2,000,000 persons: ~{seconds * 2_000_000 / args.persons / 60:.1f} min (linear)")


if __name__ == "__main__":
    main()

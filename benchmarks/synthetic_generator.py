"""Benchmark of the synthetic generator: rows per second and peak memory.

    uv run python benchmarks/synthetic_generator.py [--persons N] [--format csv|parquet]
                                                    [--chunk-persons N] [--seed S] [--out DIR]

Prints figures; asserts nothing (speed is measured here, never in timed tests). Peak memory is
the process's own high-water mark (ru_maxrss; the generator starts no other process).
"""
from __future__ import annotations

import argparse
import inspect
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthetic.generate import generate  # noqa: E402
from synthetic.params import SynthParams  # noqa: E402


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=200_000)
    ap.add_argument("--format", choices=("csv", "parquet"), default="parquet")
    ap.add_argument("--seed", type=int, default=SynthParams().seed)
    ap.add_argument("--chunk-persons", type=int, help="people per chunk (default: the generator's)")
    ap.add_argument("--out", help="output folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args()
    kwargs = {"chunk_persons": args.chunk_persons} if args.chunk_persons else {}
    if kwargs and "chunk_persons" not in inspect.signature(generate).parameters:
        ap.error("this generator has no chunk_persons")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        t0 = time.perf_counter()
        summary = generate(SynthParams(persons=args.persons, seed=args.seed), out, fmt=args.format, **kwargs)
        seconds = time.perf_counter() - t0
        size = _du(out)
    rows = sum(summary["rows"].values())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"persons            {args.persons:>14,}")
    print(f"chunk persons      {summary.get('chunk_persons', 'all'):>14}")
    print(f"rows written       {rows:>14,}  ({args.format})")
    print(f"bytes written      {size / 2**20:>14,.0f} MiB")
    print(f"seconds            {seconds:>14.1f}")
    print(f"rows per second    {rows / seconds:>14,.0f}")
    print(f"peak memory (MiB)  {peak_mib:>14,.0f}")
    print(f"projected for 2,000,000 persons: ~{seconds * 2_000_000 / args.persons / 60:.1f} min (linear)")


if __name__ == "__main__":
    main()

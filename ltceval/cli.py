"""`ltceval`: the command line of the pipeline."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import LtcevalError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + traceback
        raise LtcevalError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _cmd_synth(args: argparse.Namespace) -> int:
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    params = SynthParams(persons=args.persons, seed=args.seed)
    if args.null_effect:
        params = params.with_null_effect()
    summary = generate(params, Path(args.out), fmt=args.format)
    if args.pseudonymised_fixture:
        import os

        from synthetic.fixture import write_pseudonymised_fixture

        key = os.environ.get("LTCEVAL_PSEUDO_KEY") or os.urandom(32).hex()
        write_pseudonymised_fixture(Path(args.out), key.encode())
        print(f"wrote perfect-linkage pseudonymised fixture to {Path(args.out) / 'analytical' / 'pseudonymised'} (tests only)")
    total = sum(summary["rows"].values())
    print(f"wrote {total:,} rows in {len(summary['rows'])} extracts to {Path(args.out) / 'landing'} "
          f"({summary['seconds']} s); ground truth in {Path(args.out) / 'ground_truth'}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .run import run_pipeline

    report = run_pipeline(out=Path(args.out), persons=args.persons, seed=args.seed,
                          config=Path(args.config) if args.config else None)
    print(f"business-case report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ltceval", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("synth", help="write synthetic identifiable extracts and their ground truth")
    p.add_argument("--persons", type=_positive_int, default=20_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="output folder (landing/ and ground_truth/ are written inside)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--null-effect", action="store_true", help="plant no effect of therapy on any outcome")
    p.add_argument("--pseudonymised-fixture", action="store_true",
                   help="also write analytical/pseudonymised/ straight from the ground truth "
                        "(perfect linkage; a test fixture for the analytical zone, never used by the pipeline)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("run", help="run the three DAGs end to end on an embedded Airflow")
    p.add_argument("--persons", type=_positive_int, default=20_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="ltceval-out", help="output folder (default ./ltceval-out)")
    p.add_argument("--config", help="sources config naming real extracts; synthetic data are generated when omitted")
    p.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except LtcevalError as exc:
        print(f"ltceval: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        print(f"ltceval: error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ltceval: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

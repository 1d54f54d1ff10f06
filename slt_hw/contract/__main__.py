"""`python -m slt_hw.contract vectors --out DIR` writes the conformance kit's golden vectors;
`check --vectors DIR --results RES` validates another implementation's output files against
them; `answer --vectors DIR --out RES` writes slt_hw's own outputs (the protocol, worked).
docs/rng.md §9 describes the files."""

from __future__ import annotations

import argparse
import sys

from .kit import answer, check, write_vectors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slt_hw.contract", description=__doc__)
    sub = ap.add_subparsers(dest="action", required=True)
    sub.add_parser("vectors", help="write the golden vectors").add_argument("--out", required=True)
    chk = sub.add_parser("check", help="compare an implementation's output files with the vectors")
    chk.add_argument("--vectors", required=True)
    chk.add_argument("--results", required=True)
    chk.add_argument("--partial", action="store_true", help="results for some files only: skip the others")
    ans = sub.add_parser("answer", help="write slt_hw's own outputs for the vectors (an example implementation)")
    ans.add_argument("--vectors", required=True)
    ans.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        if args.action == "vectors":
            for path in write_vectors(args.out):
                print(f"wrote {path}")
            return 0
        if args.action == "answer":
            for path in answer(args.vectors, args.out):
                print(f"wrote {path}")
            return 0
        ok, lines = check(args.vectors, args.results, args.partial)
        print("\n".join(lines))
        print("PASS: bit-exact on every case checked" if ok else "FAIL")
        return 0 if ok else 1
    except (OSError, ValueError) as e:  # a missing or unreadable vectors file: one line naming it
        print(f"python -m slt_hw.contract {args.action}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``python -m rans.torch report FILE``: the GPU memory a checkpoint's weights would hold, compressed or not."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import RansError
from .report import BY, file_report
from .weights import MIN_BYTES


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m rans.torch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="memory held by a .rans checkpoint's weights, per module and in total")
    report.add_argument("file", help="a file written by rans.save_file")
    report.add_argument("--by", choices=BY, default="block", help="rows per tensor, module, or block (default)")
    report.add_argument("--min-bytes", type=int, default=MIN_BYTES, help="tensors this large stay compressed")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        result = file_report(args.file, by=args.by, min_bytes=args.min_bytes)
    except (RansError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict(), indent=1) if args.json else result.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())

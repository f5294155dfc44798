"""The ``hostprof convert`` subcommand."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hostprof import encoders
from hostprof._errors import FormatError
from hostprof._errors import UsageError
from hostprof.cli._common import Command
from hostprof.io import read_profile
from hostprof.io import write_profile


class ConvertCommand(Command):
    """Convert a profile between folded, pprof, speedscope and HTML flamegraph.

    The input format is detected from the content; the output format from the extension of
    -o (or --format).

    examples:
      hostprof convert profile.pprof -o profile.html
      hostprof convert stacks.folded -o profile.pprof
      hostprof convert profile.pprof --format folded -o -     (to stdout)
    """

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "input", help="input file (folded, pprof, gzipped or not), or - for stdin"
        )
        parser.add_argument("-o", "--output", required=True, help="output file, or - for stdout")
        parser.add_argument(
            "--format",
            choices=encoders.FORMATS,
            help="output format (default: from -o's extension)",
        )
        parser.add_argument(
            "--sample-type",
            help="for single-type formats: which sample type, e.g. cpu or cpu:nanoseconds",
        )

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
        if args.output == "-" and not args.format:
            raise UsageError(
                "writing to stdout needs --format",
                "add --format folded (or pprof, speedscope, html)",
            )
        fmt = args.format or encoders.format_for_path(args.output)
        if args.input == "-":
            data = sys.stdin.buffer.read()
        else:
            try:
                data = Path(args.input).read_bytes()
            except OSError as exc:
                raise UsageError(
                    f"cannot read {args.input}: {exc.strerror}", "check the path"
                ) from None
        try:
            profile = read_profile(data)
        except FormatError as exc:
            raise FormatError(
                f"{args.input}: {exc.message}", "is this a folded or pprof profile?"
            ) from None
        write_profile(profile, args.output, fmt, sample_type=args.sample_type)
        if args.output != "-":
            print(f"wrote {args.output} ({fmt}, {len(profile)} stacks)", file=sys.stderr)
        return 0

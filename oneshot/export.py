"""Print or write a genotype: ``python -m oneshot.export RUN_DIR_OR_FILE [--format json|darts]``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from oneshot.errors import USER_ERRORS
from oneshot.genotypes import LoadedGenotype, load_genotype

FORMATS = ("json", "darts")


def genotype_json(loaded: LoadedGenotype) -> str:
    """The genotype file document (space, genotype, meta) as indented JSON."""
    return json.dumps({"space": loaded.space, "genotype": loaded.genotype.to_dict(),
                       "meta": loaded.meta}, indent=2)


def render(loaded: LoadedGenotype, formats: Sequence[str]) -> str:
    """The genotype in each requested format, one after another."""
    parts = []
    for fmt in formats:
        if fmt == "json":
            parts.append(genotype_json(loaded))
        elif fmt == "darts":
            parts.append(str(loaded.genotype))
    return "\n".join(parts)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m oneshot.export",
        description="Print the genotype of a search run dir, genotype file, checkpoint or published name.")
    parser.add_argument("source", help="run dir, genotype.json, .ckpt, DARTS text file or a published "
                                       "name such as DARTS_V2")
    parser.add_argument("--format", choices=FORMATS, action="append",
                        help="output format; repeat for several (default: json then darts)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``oneshot-export``); returns the exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        loaded = load_genotype(args.source)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render(loaded, args.format or list(FORMATS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

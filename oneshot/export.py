"""Print or write a genotype: ``python -m oneshot.export SOURCE [--format FMT] [--out DIR]``.

``json`` and ``darts`` print the genotype (or, with ``--out``, write ``genotype.json`` and
``genotype.txt``); ``svg``, ``png`` and ``dot`` write one cell diagram per cell into ``--out``;
``--alpha-plot`` writes the alpha-evolution plots of a run dir. ``onnx`` and ``torchscript``
write the trained network of a retrain run dir (``model.onnx``, ``model.torchscript.pt``, into
``--out`` or the run dir), checked against PyTorch on a batch (see :mod:`oneshot.deploy`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from oneshot import errors
from oneshot.commandline.checks import quiet_on_broken_pipe
from oneshot.errors import ConfigError
from oneshot.storage.files import save_genotype_file, write_atomic

if TYPE_CHECKING:  # torch and the renderers are imported after the arguments were parsed
    from oneshot.deploy.exporting import ExportResult
    from oneshot.storage.genotypes import LoadedGenotype
    from oneshot.render import GraphvizMissingError

DIAGRAM_FORMATS = ("dot", "svg", "png")  # oneshot.render.drawing's, named here for a quick --help
MODEL_FORMATS = ("onnx", "torchscript")  # oneshot.deploy.formats's
DEFAULT_TOLERANCE = 1e-4

TEXT_FORMATS = ("json", "darts")
ONE_LINE_FORMATS = ("darts", "text")  # the space's text form; "darts" is its name in the DARTS space
FORMATS = (*TEXT_FORMATS, "text", *DIAGRAM_FORMATS, *MODEL_FORMATS)
TEXT_FILES = {"json": "genotype.json", "darts": "genotype.txt", "text": "genotype.txt"}


def genotype_json(loaded: LoadedGenotype) -> str:
    """Exactly the genotype file (``format_version``, space, genotype, meta), without the final
    newline: ``--format json > g.json`` writes a file that ``oneshot.retrain`` reads back."""
    from supernets.genotype_file import genotype_file_text

    return genotype_file_text(space=loaded.space, genotype=loaded.genotype.to_dict(),
                              meta=loaded.meta).rstrip("\n")


def render(loaded: LoadedGenotype, formats: Sequence[str]) -> str:
    """The genotype in each requested format, one after another."""
    parts = []
    for fmt in formats:
        if fmt == "json":
            parts.append(genotype_json(loaded))
        elif fmt in ONE_LINE_FORMATS:
            parts.append(str(loaded.genotype))
    return "\n".join(parts)


def write_outputs(loaded: LoadedGenotype, formats: Sequence[str], out_dir: Path
                  ) -> tuple[list[Path], GraphvizMissingError | None]:
    """Write each format into ``out_dir``; returns the files and the error of a missing ``dot``.

    ``json`` is a genotype file (readable by ``oneshot.retrain``), ``darts`` the text form, the
    diagram formats one file per cell. Without Graphviz's ``dot`` program, ``svg``/``png`` fall
    back to the dot source and every other format is still written.
    """
    from oneshot.render import GraphvizMissingError, cell_graphs, write_diagrams

    written: list[Path] = []
    missing: GraphvizMissingError | None = None
    for fmt in formats:
        if fmt == "json":
            path = out_dir / TEXT_FILES[fmt]
            save_genotype_file(path, space=loaded.space, genotype=loaded.genotype.to_dict(),
                               meta=loaded.meta)
            written.append(path)
        elif fmt in ONE_LINE_FORMATS:
            path = out_dir / TEXT_FILES[fmt]
            write_atomic(path, f"{loaded.genotype}\n".encode("utf-8"))
            written.append(path)
        else:
            try:
                written += write_diagrams(cell_graphs(loaded.space, loaded.genotype), out_dir, fmt)
            except GraphvizMissingError as err:
                missing = err
    if missing is not None and "dot" not in formats:
        written += write_diagrams(cell_graphs(loaded.space, loaded.genotype), out_dir, "dot")
    return written, missing


def export_line(result: ExportResult) -> str:
    """What an export wrote and how closely the file reproduces PyTorch."""
    return (f"{result.path} ({result.fmt}, {len(result.class_names)} classes): max abs "
            f"difference from PyTorch {result.max_abs_diff:.3g} on {result.images} images "
            f"(allowed {result.allowed:.3g})")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m oneshot.export",
        description="Print the genotype of a search run dir, genotype file, checkpoint or published "
                    "name, or write it and its cell diagrams into a directory.")
    parser.add_argument("source", help="run dir, genotype.json, .ckpt, a genotype's text form (in a file "
                                       "or quoted), or a published name such as DARTS_V2")
    parser.add_argument("--format", choices=FORMATS, action="append",
                        help="output format; repeat for several (default: json then darts); darts and "
                             "text both give the space's one-line text form (e.g. NAS-Bench-201's "
                             "|op~j|+... string); svg, png and dot (cell diagrams) need --out; "
                             "onnx and torchscript write the trained network of a retrain run dir "
                             "(onnx needs pip install -e \".[export]\")")
    parser.add_argument("--out", metavar="DIR",
                        help="write files into DIR instead of printing (genotype.json, "
                             "genotype.txt, <cell>.svg|png|dot; the alpha plots)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="onnx/torchscript: the largest accepted difference of the exported "
                             "model's logits from PyTorch's, relative to the largest logit (at "
                             "least 1); a larger one writes nothing, exit 1 "
                             f"(default {DEFAULT_TOLERANCE:g})")
    parser.add_argument("--alpha-plot", action="store_true",
                        help="write alpha_evolution_<group>.png from the run dir's TensorBoard "
                             "events (into --out, default the run dir)")
    return parser.parse_args(argv)


@quiet_on_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``oneshot-export``); returns the exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from oneshot.deploy.exporting import ExportMismatchError, export_run
    from oneshot.storage.genotypes import load_genotype
    from oneshot.render import save_alpha_plots

    requested = list(dict.fromkeys(args.format or ([] if args.alpha_plot else TEXT_FORMATS)))
    models = [fmt for fmt in requested if fmt in MODEL_FORMATS]
    formats = [fmt for fmt in requested if fmt not in MODEL_FORMATS]
    written: list[Path] = []
    missing: GraphvizMissingError | None = None
    try:
        if models and not (args.tolerance >= 0):
            raise ConfigError(f"--tolerance must be a number >= 0, got {args.tolerance}")
        for fmt in models:
            print(export_line(export_run(args.source, fmt, args.out, tolerance=args.tolerance)))
        diagrams = [fmt for fmt in formats if fmt in DIAGRAM_FORMATS]
        if diagrams and args.out is None:
            raise ConfigError(f"--format {diagrams[0]} writes one file per cell; add --out DIR")
        if formats:
            loaded = load_genotype(args.source)
            if args.out is None:
                print(render(loaded, formats))
            else:
                written, missing = write_outputs(loaded, formats, Path(args.out))
        if args.alpha_plot:
            written += save_alpha_plots(args.source, args.out)
    except errors.USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ExportMismatchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # standard output's reader went away: quiet_on_broken_pipe ends it
        raise
    except OSError as err:
        print(f"error: cannot write '{err.filename or args.out}': {err.strerror}; "
              "choose another --out DIR", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    if missing is not None:
        print(f"error: {missing}; wrote the dot source (.dot) instead", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

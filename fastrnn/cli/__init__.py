"""The ``fastrnn`` command: train, evaluate and use recurrent models from the shell.

For example::

    fastrnn demo                               # a digit classifier, then a character model
    fastrnn train digits --cell gru --epochs 10 --out digits.npz --plot digits.png
    fastrnn evaluate digits.npz                # on the test split it was not trained on
    fastrnn predict digits.npz images.npy      # one class per image
    fastrnn train text --out genesis.npz && fastrnn sample genesis.npz --prime "And God"
    fastrnn bench --quick
    fastrnn info
    fastrnn export digits.npz --onnx digits.onnx      # for ONNX Runtime and other runtimes
    fastrnn import-torch weights.npz --head many_to_one --out model.npz   # a torch state_dict

Exit status: 0 on success; 2 for a user's mistake (an unknown task, a missing or malformed
file, a model file of another kind, an impossible size, no command at all), said in one
line on stderr (no command: the help on stderr); 1 for anything else that goes wrong, a
bug, also in one line (``--traceback`` shows the whole story instead); 130 when
interrupted (Ctrl-C).  ``fastrnn --help`` says the same.

JSON written by the command (the history and test metrics saved with a model,
``evaluate --json``) holds a non-finite number (an infinite or nan loss) as null.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from ..io import ModelFileError
from .common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, UsageError, one_line
from .convert import cmd_export, cmd_import_torch
from .demo import cmd_demo
from .info import cmd_bench, cmd_info
from .parser import build_parser
from .train import cmd_evaluate, cmd_predict, cmd_sample, cmd_train

__all__ = ["main"]

# the function of each command (``args.command``); it returns the exit status
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": cmd_demo, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
    "sample": cmd_sample, "bench": cmd_bench, "export": cmd_export,
    "import-torch": cmd_import_torch, "info": cmd_info,
}


def main(argv: list[str] | None = None) -> int:
    """Run the ``fastrnn`` command with ``argv`` (default ``sys.argv[1:]``); returns the
    exit status.

    >>> from fastrnn.cli import main
    >>> main(["--version"])
    fastrnn ...
    0
    """
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        # argparse's parse_args, except that `fastrnn bench` without its harness takes
        # any option (and then says that it cannot run)
        if unknown and not getattr(args, "harness_missing", False):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exit_:     # --help, --version, or a mistake already reported
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USAGE
    args.argv = argv
    if args.command is None:     # argparse's convention: usage on stderr, status 2
        parser.print_help(sys.stderr)
        print(f"{parser.prog}: error: a command is required (see {parser.prog} --help)",
              file=sys.stderr)
        return EXIT_USAGE
    prog = f"fastrnn {args.command}"
    try:
        return int(COMMANDS[args.command](args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (e.g. `fastrnn sample m.npz | head`): not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    # a user's mistake: UsageError from the commands; ValueError (fastrnn.data's DataError
    # among them: a malformed data file) and TypeError from the data and the models
    except (UsageError, ModelFileError, ValueError, TypeError, OSError, MemoryError) as err:
        if args.traceback:
            raise
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:        # not foreseen: a bug; one line, --traceback for more
        if args.traceback:
            raise
        print(f"{prog}: internal error: {type(err).__name__}: {one_line(err)} (run again "
              f"with --traceback and report it)", file=sys.stderr)
        return EXIT_FAILURE

"""The command-line boundary shared by every script: config parsing, logging, and one-line errors.

    def main(argv=None):
        cfg = parse(InferConfig, argv, __doc__, aliases={"-i": "input"})
        ...
    if __name__ == "__main__":
        sys.exit(run(main))

Errors a user can fix (tvt.errors.TVTError, missing files) print ``error: <message>`` and exit 2; Ctrl-C exits
130 with one line; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from tvt.config import HelpRequested, load_config
from tvt.errors import TVTError

T = TypeVar("T")
EXIT_USER_ERROR, EXIT_INTERRUPTED = 2, 130


def parse(schema: type[T], argv: Sequence[str] | None, doc: str | None, **kwargs) -> T:
    """``load_config`` on the command line's arguments (``sys.argv[1:]`` when ``argv`` is None)."""
    prog = Path(sys.argv[0]).name
    return load_config(schema, sys.argv[1:] if argv is None else list(argv), doc=doc or "", prog=prog, **kwargs)


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("accelerate", "diffusers", "transformers", "torch", "PIL", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)  # their INFO lines hide ours
    try:
        return main(argv) or 0
    except HelpRequested as help_text:
        print(help_text)
        return 0
    except (TVTError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


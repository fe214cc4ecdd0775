"""The command-line boundary shared by every script: config parsing, logging, and one-line errors.

    @command(InferConfig, aliases={"-i": "input", "-o": "output"})
    def main(cfg: InferConfig) -> int:
        ...

    if __name__ == "__main__":
        sys.exit(main())

``main(argv=None)`` parses ``argv`` (default: the command line) with tvt.config's grammar against the schema; the
module docstring is the ``--help`` text; a ``device`` key is checked against this machine before ``fn`` runs.
Errors a user can fix (tvt.errors.TVTError, missing files) print ``error: <message>`` and return 2; Ctrl-C prints
one line and returns 130, SIGTERM likewise 143; anything else is a bug and keeps its traceback. The console
commands of pyproject.toml call the same ``main``; a Ctrl-C while a command is still importing is one line too
(tvt_scripts/__init__.py).
"""
from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from tvt.config import HelpRequested, load_config
from tvt.devices import check_device
from tvt.errors import TVTError
from tvt.signals import Terminated, TerminationRequest

T = TypeVar("T")
EXIT_USER_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 130, 143  # 128 + SIGINT / SIGTERM, as shells report them
QUIET = ("accelerate", "diffusers", "transformers", "torch", "PIL", "matplotlib", "httpx", "huggingface_hub")


def command(schema: type[T], *, aliases: dict[str, str] | None = None, positional: str | None = None):
    """Turn ``fn(cfg) -> int`` into ``main(argv=None) -> int`` (see the module docstring)."""
    def wrap(fn: Callable[[T], int | None]) -> Callable[[Sequence[str] | None], int]:
        doc = fn.__globals__.get("__doc__") or ""  # the script's module docstring

        @functools.wraps(fn)
        def main(argv: Sequence[str] | None = None) -> int:
            def body() -> int | None:
                cfg = load_config(schema, sys.argv[1:] if argv is None else list(argv), aliases=aliases,
                                  positional=positional, doc=doc, prog=Path(sys.argv[0]).name)
                if isinstance(getattr(cfg, "device", None), str):  # before any model is loaded onto it
                    check_device(cfg.device)
                return fn(cfg)
            return run(body)
        return main
    return wrap


def run(body: Callable[[], int | None]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)  # their INFO lines would hide ours
    try:
        with TerminationRequest():  # SIGTERM as Ctrl-C: temp files cleaned up, one line
            return body() or 0
    except HelpRequested as help_text:
        print(help_text)
        return 0
    except (TVTError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED


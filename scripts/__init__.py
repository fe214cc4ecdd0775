"""Command-line entry points (installed as the ``tvt_scripts`` package; console commands in pyproject.toml).

Importing the package first makes a Ctrl-C that comes while a command is still importing (torch, diffusers: seconds)
print the same one line as one during its work (scripts/_cli.py), not a traceback. Every command imports it before
anything else, so this holds for ``python scripts/x.py`` too; it imports nothing heavy itself.
"""
import sys

_previous_hook = sys.excepthook


def _interrupted_while_importing(kind, value, tb):
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted (Ctrl-C)", file=sys.stderr)
    else:
        _previous_hook(kind, value, tb)


if sys.excepthook is sys.__excepthook__:  # only where nobody (a debugger, IPython) installed their own
    sys.excepthook = _interrupted_while_importing

"""SIGTERM handled as Ctrl-C is: a cluster scheduler (or ``kill``) sends it before it kills a job, so a command says
where it stopped instead of vanishing, and training can save a final checkpoint at a step boundary first.

    with TerminationRequest() as term:   # SIGTERM now raises Terminated (a KeyboardInterrupt)
        setup()
        term.defer = True                 # from here only recorded: the loop checks term.requested
        while ...:
            if term.requested: ...        # a safe point: save, then raise Terminated()
"""
from __future__ import annotations

import signal
import threading


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by SIGTERM; a KeyboardInterrupt, so whatever cleans up after Ctrl-C runs."""


class TerminationRequest:
    """Inside the ``with`` block SIGTERM raises Terminated at once, or, while ``defer`` is set, only sets
    ``requested`` for the code to stop at its next safe point. Installed from the main thread only (elsewhere the
    block changes nothing); the previous handler comes back after the block."""

    def __init__(self):
        self.requested = False
        self.defer = False
        self._previous = None

    def __enter__(self) -> "TerminationRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True
        if not self.defer:
            raise Terminated()

"""Is the model hub reachable? Asked once per process, so that an offline machine fails fast.

Offline, huggingface_hub retries with back-off before giving up (45 s to several minutes per missing model);
we look once (``HF_HUB_OFFLINE`` set, or no TCP connection to the hub within ``timeout``) and then load with
``local_files_only=True``: a missing model is reported at once. Nothing here changes the process environment.
"""
from __future__ import annotations

import contextlib
import functools
import os
import socket
from typing import Iterator

HUB_HOST = "huggingface.co"


@functools.lru_cache(maxsize=1)
def offline(timeout: float = 2.0) -> bool:
    """True when hub downloads cannot work: HF_HUB_OFFLINE is set, or the hub does not answer."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return False
    except OSError:
        return True


def hub_kwargs() -> dict:
    """Extra ``from_pretrained`` arguments: ``local_files_only=True`` when offline."""
    return {"local_files_only": True} if offline() else {}


@contextlib.contextmanager
def no_hub_retries() -> Iterator[None]:
    """For third-party code that calls the hub itself (pyiqa's backbones): when offline, hub calls fail at once
    inside the block. huggingface_hub reads this module constant at call time; it is restored after the block."""
    if not offline():
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before

"""Compatibility shims for third-party packages pinned in requirements.txt.

basicsr 1.4.2 (the registry release) imports ``torchvision.transforms.functional_tensor``,
a module torchvision removed in 0.17; it now lives at ``torchvision.transforms._functional_tensor``.
We alias the old name before basicsr is imported, rather than depend on an unmaintained fork.
"""
import importlib
import sys


def patch_basicsr_import() -> None:
    name = "torchvision.transforms.functional_tensor"
    if name not in sys.modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            sys.modules[name] = importlib.import_module("torchvision.transforms._functional_tensor")


def import_basicsr():
    """Import basicsr with the shim applied; use this instead of a bare ``import basicsr``."""
    patch_basicsr_import()
    return importlib.import_module("basicsr")

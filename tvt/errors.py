"""Errors a user can fix: every command turns these into one line naming the problem (no traceback).

Library code raises them; the command-line boundary (scripts/_cli.py) prints ``error: <message>`` and exits
with a non-zero code. Anything else is a bug and keeps its traceback.
"""


class TVTError(Exception):
    """Base of the errors caused by inputs, files or settings rather than by the code."""


class ConfigError(TVTError, ValueError):
    """A config file or override does not match its schema."""


class InputError(TVTError, ValueError):
    """A bad user input: an unreadable or too small image, mismatched folders, a bad option value."""


class MissingWeightsError(TVTError, FileNotFoundError):
    """Pretrained weights are not available locally and cannot be downloaded."""


class DamagedWeightsError(TVTError):
    """A weight file is there but cannot be read: truncated (a partial copy or download) or corrupted."""


class ImageSizeError(InputError):
    """An input image is too small or would give an output too large for the configured limits."""


class CheckpointError(TVTError):
    """A checkpoint cannot be resumed from: a file is missing, truncated or does not fit the config."""


class NonFiniteLossError(TVTError, RuntimeError):
    """Training halted on a non-finite loss (train.nonfinite=halt, or too many skipped steps)."""

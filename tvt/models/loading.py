"""One place that turns "weights are missing" into a clear message instead of a hub traceback."""
from __future__ import annotations

from pathlib import Path

from ..errors import TVTError

SD21_BASE = "stabilityai/stable-diffusion-2-1-base"


class MissingWeightsError(TVTError, FileNotFoundError):
    """Pretrained weights are not available locally and cannot be downloaded."""


def require_pretrained(cls, path_or_hub_id, what: str, subfolder: str | None = None, **kwargs):
    """``cls.from_pretrained`` with an error that names the weights and where to put them.

    Never falls back to random weights.
    """
    path_or_hub_id = str(path_or_hub_id)
    local = Path(path_or_hub_id).expanduser()
    looks_local = local.exists() or path_or_hub_id.startswith((".", "/", "~")) or path_or_hub_id.count("/") > 1
    if looks_local:
        if not local.exists():
            raise MissingWeightsError(f"{what}: no folder at {local} (expected a diffusers model folder)")
        folder = local / subfolder if subfolder else local
        if not folder.is_dir():
            raise MissingWeightsError(f"{what}: folder {folder} does not exist (expected a diffusers model folder)")
    try:
        return cls.from_pretrained(path_or_hub_id, subfolder=subfolder, **kwargs)
    except (OSError, ValueError, EnvironmentError) as err:
        where = f"{path_or_hub_id}/{subfolder}" if subfolder else path_or_hub_id
        raise MissingWeightsError(
            f"{what} weights not found at '{where}'. Download them (e.g. `huggingface-cli download "
            f"{SD21_BASE if 'SD' in what else path_or_hub_id}`) on a machine with internet and pass the local "
            f"folder instead. Original error: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None

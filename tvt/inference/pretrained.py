"""What ``TVTPipeline.from_pretrained`` loads, in this order: "bicubic" (the caller's case); a TVT export folder or
hub repo (tvt.export); the official TVT release (tvt.models.convert); else an SD 2.1-base folder or hub id
(``TVTPipeline.from_sd``, untrained). And the tagger a loaded model's PromptSpec asks for."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import MissingWeightsError
from ..models.loading import TVTComponents, download_if_present, looks_local
from ..prompts import PromptExtractor, PromptSpec, build_prompt_extractor


def find_components(name: str, device, base_model: str | None = None) -> TVTComponents | None:
    """The components of the export or official release at ``name`` (a path or hub id), or None when ``name`` is
    an SD 2.1-base folder or hub id. A local-looking path that does not exist is a MissingWeightsError."""
    from ..export import CONFIG_NAME, is_tvt_export, load_tvt_export
    from ..models.convert import load_official_release

    local = Path(name).expanduser()
    if not local.exists():
        if looks_local(name):
            raise MissingWeightsError(f"model not found: {local} (expected a TVT export folder, the official TVT "
                                      "release, an SD 2.1-base folder or hub id, or 'bicubic')")
        local = download_if_present(name, CONFIG_NAME) or local
    if is_tvt_export(local):
        return load_tvt_export(local, device=device, base_model=base_model)
    if local.is_file() or (local.is_dir() and not (local / "unet").is_dir() and not (local / "model_index.json").is_file()):
        return load_official_release(local, base_model=base_model)
    return None


def prompting(spec: PromptSpec, prompt_extractor, ram_weights: str | None, dape_weights: str | None,
              device) -> tuple[PromptSpec, PromptExtractor | None]:
    """The spec (weight paths overridden) and its extractor: "auto" builds the tagger the spec names (None for
    the fixed extractor); None or a PromptExtractor is used as given."""
    spec = dataclasses.replace(spec, **{k: v for k, v in (("ram_weights", ram_weights), ("dape_weights", dape_weights)) if v})
    if prompt_extractor == "auto":
        return spec, (None if spec.extractor == "fixed" else build_prompt_extractor(spec, str(device)))
    return spec, prompt_extractor

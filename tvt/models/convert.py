"""Converters from the official TVT release (github.com/Joyies/TVT, weights at huggingface.co/Joypop/TVTSR, ``ckp/``).

Official layout, read from its TVT/modelfile/TVTModel.py and README:
- ``ckp/vae.ckpt`` (VAE-D4): a Lightning checkpoint (trained with the LDM code); ``ckpt["state_dict"]`` holds the
  VAE under the prefix ``vaeDe4.``. TVT.__init__ strips the prefix and loads the rest ``strict=True`` into its
  diffusers AutoencoderKL copy without mid blocks (TVT/VAED4/config2.json: 128/256/256, 2 layers, 4 latent
  channels), so the names are diffusers names -- ours. Checkpoints in LDM naming (``encoder.down.0.block.0...``)
  are accepted too and go through diffusers' ``convert_ldm_vae_checkpoint``, which handles a mid-less 3-level VAE.
- ``ckp/TVTUNet/unet``: the five-level UNet as a diffusers folder (= our CE-UNet config); its initialisation code
  is not released. We rebuild it from SD 2.1 (tvt.models.ce_unet) unless the folder is given.
- ``ckp/model_TVT.pkl``: ``torch.save`` of {"rank_unet", "unet_lora_encoder_modules", "unet_lora_decoder_modules",
  "unet_lora_others_modules", "state_dict_unet"}. The three lists are the target modules of the peft adapters
  ``default_encoder`` / ``default_decoder`` / ``default_others`` (``tvt.models.lora.official_lora_groups``); ``state_dict_unet``
  holds every LoRA tensor plus the fully trained layers (down_blocks.0, up_blocks.3.upsamplers.0, up_blocks.4,
  conv_in, conv_out) under their LoRA-wrapped names (``...conv1.base_layer.weight``), since the official code also
  puts LoRA on those layers. All three adapters are active at inference (``set_adapter([...3 names])``).
- Inference (``scripts/test/test_realsr.sh``): t = 1, prompted with DAPE tags of the upscaled LR + "clean,
  high-resolution, 8k" (``--ram_ft_path ckp/DAPE.pth``: the RAM and DAPE weights sit in ``ckp/`` too).

``load_official_release(ckp)`` turns the whole folder into the components TVTPipeline runs.
"""
from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig
from torch import nn

from ..errors import MissingWeightsError
from ..prompts import DAPE_WEIGHTS, RAM_WEIGHTS, official_inference_prompt
from .generator import GENERATOR_TIMESTEP  # test_realsr.sh --time_step 1
from .loading import SD21_BASE, TVTComponents, load_text_parts
from .lora import merge_lora
from .vae import AutoencoderKLD4, build_vae_d4

OFFICIAL_VAE_PREFIX = "vaeDe4."
OFFICIAL_ADAPTERS = ("encoder", "decoder", "others")  # adapter names: default_<name>
OFFICIAL_UNET_KEYS = ("rank_unet", "state_dict_unet", *(f"unet_lora_{a}_modules" for a in OFFICIAL_ADAPTERS))
OFFICIAL_VAE_CONFIG = dict(sample_size=768)  # config2.json; everything else equals build_vae_d4("d4")


def _load(ckpt) -> dict:
    if isinstance(ckpt, dict):
        return ckpt
    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"official TVT checkpoint not found: {path} (download ckp/ from huggingface.co/Joypop/TVTSR)")
    return torch.load(path, map_location="cpu", weights_only=False)  # official files are pickled dicts


# ---------------------------------------------------------------------------------------------
# VAE-D4
# ---------------------------------------------------------------------------------------------
def _is_ldm_naming(keys) -> bool:
    return any(k.startswith(("encoder.down.", "decoder.up.")) for k in keys)


def official_vae_d4_state_dict(ckpt, config: dict | None = None) -> dict[str, torch.Tensor]:
    """The VAE-D4 tensors of an official checkpoint (path or loaded dict) in diffusers naming."""
    raw = _load(ckpt)
    state = raw.get("state_dict", raw)
    weights = {k[len(OFFICIAL_VAE_PREFIX):]: v for k, v in state.items() if k.startswith(OFFICIAL_VAE_PREFIX)}
    if not weights:
        raise KeyError(f"no '{OFFICIAL_VAE_PREFIX}*' tensors under 'state_dict': not an official TVT VAE-D4 checkpoint")
    if _is_ldm_naming(weights):
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        config = config or dict(build_vae_d4("d4").config)
        weights = convert_ldm_vae_checkpoint(weights, config)
    return weights


def convert_official_vae_d4(ckpt, **vae_kwargs) -> AutoencoderKLD4:
    """Official ``vae.ckpt`` (path or loaded dict) -> AutoencoderKLD4; every tensor must find its place."""
    with torch.device("meta"):
        skeleton = build_vae_d4("d4", **{**OFFICIAL_VAE_CONFIG, **vae_kwargs})
    weights = official_vae_d4_state_dict(ckpt, dict(skeleton.config))
    vae = build_vae_d4("d4", **{**OFFICIAL_VAE_CONFIG, **vae_kwargs})
    result = vae.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise KeyError(f"official VAE-D4 does not match our layout: missing {result.missing_keys[:5]}, "
                       f"unexpected {result.unexpected_keys[:5]}")
    return vae


# ---------------------------------------------------------------------------------------------
# CE-UNet LoRA + fully trained layers
# ---------------------------------------------------------------------------------------------
def load_official_unet(ckpt, ce_unet: nn.Module, merge: bool = True) -> nn.Module:
    """Put the official adapters and fully trained layers (``model_TVT.pkl``) on ``ce_unet`` (five levels, base
    weights from SD or ckp/TVTUNet); merged into plain weights unless ``merge=False`` (then all three are active)."""
    raw = _load(ckpt)
    missing = [k for k in OFFICIAL_UNET_KEYS if k not in raw]
    if missing:
        raise KeyError(f"not an official TVT UNet checkpoint (model_TVT.pkl): missing {missing}")
    if len(ce_unet.config.block_out_channels) != 5:
        raise ValueError("the official TVT UNet checkpoint needs a CE-UNet (5 levels); build it with build_ce_unet_from_sd")
    for a in OFFICIAL_ADAPTERS:
        cfg = LoraConfig(r=raw["rank_unet"], init_lora_weights="gaussian", target_modules=raw[f"unet_lora_{a}_modules"])
        ce_unet.add_adapter(cfg, adapter_name=f"default_{a}")
    ce_unet.set_adapters([f"default_{a}" for a in OFFICIAL_ADAPTERS])
    params = dict(ce_unet.named_parameters())
    state = raw["state_dict_unet"]
    unknown = [k for k in state if k not in params]
    if unknown:
        raise KeyError(f"{len(unknown)} official UNet tensors have no place in the CE-UNet, e.g. {unknown[:3]}")
    with torch.no_grad():
        for k, v in state.items():
            if params[k].shape != v.shape:
                raise ValueError(f"official tensor {k} has shape {tuple(v.shape)}, the CE-UNet expects {tuple(params[k].shape)}")
            params[k].copy_(v)
    return merge_lora(ce_unet) if merge else ce_unet


def convert_official_tvt(vae_ckpt, unet_ckpt, sd_unet: nn.Module | None = None, tvt_unet: nn.Module | None = None,
                         merge: bool = True) -> tuple[AutoencoderKLD4, nn.Module]:
    """Official release -> (VAE-D4, CE-UNet with the trained weights).

    vae_ckpt: ``ckp/vae.ckpt``; unet_ckpt: ``ckp/model_TVT.pkl`` (paths or loaded dicts). The CE-UNet's base
    weights come from ``tvt_unet`` (``load_ce_unet("ckp/TVTUNet", subfolder="unet")``) or else are rebuilt from
    ``sd_unet`` (SD 2.1-base, ``load_sd_unet``); every layer the release trained is overwritten by unet_ckpt.
    """
    from .ce_unet import build_ce_unet_from_sd

    if tvt_unet is None and sd_unet is None:
        raise ValueError("convert_official_tvt needs the base UNet: sd_unet (SD 2.1-base) or tvt_unet (ckp/TVTUNet)")
    ce_unet = tvt_unet if tvt_unet is not None else build_ce_unet_from_sd(sd_unet)
    return convert_official_vae_d4(vae_ckpt), load_official_unet(unet_ckpt, ce_unet, merge=merge)


# ---------------------------------------------------------------------------------------------
# The whole release
# ---------------------------------------------------------------------------------------------
def is_official_release(path: str | Path) -> bool:
    """``path`` is a release folder (``model_TVT.pkl`` + ``vae.ckpt``) or its ``model_TVT.pkl``."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return (path.is_file() or (folder / "model_TVT.pkl").is_file()) and (folder / "vae.ckpt").is_file()


def load_official_release(path: str | Path, base_model: str | Path | None = None) -> TVTComponents:
    """The official release (``ckp/``: model_TVT.pkl, vae.ckpt, optional TVTUNet/) -> merged, fp32 components.

    ``path`` is that folder or its model_TVT.pkl; SD 2.1-base (``base_model``, default the hub id) gives the text
    encoder and, without TVTUNet/, the CE-UNet's SD weights. The prompt spec points at ``ckp/``'s RAM and DAPE
    weights, as test_realsr.sh does.
    """
    from .ce_unet import build_ce_unet_from_sd, load_ce_unet, load_sd_unet

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not is_official_release(path):
        raise MissingWeightsError(
            f"{path} is neither a TVT export (tvt_config.json), an SD 2.1 folder (unet/), nor the official TVT release: "
            f"expected model_TVT.pkl and vae.ckpt in {folder} (download from https://huggingface.co/Joypop/TVTSR)")
    base = str(base_model or SD21_BASE)
    te, tok, sched = load_text_parts(base)
    tvt_unet = folder / "TVTUNet"
    ce_unet = load_ce_unet(tvt_unet, subfolder="unet") if (tvt_unet / "unet").is_dir() else build_ce_unet_from_sd(load_sd_unet(base))
    load_official_unet(path if path.is_file() else folder / "model_TVT.pkl", ce_unet)  # all three adapters merged
    prompt = official_inference_prompt(str(folder / RAM_WEIGHTS), str(folder / DAPE_WEIGHTS))
    return TVTComponents(vae=convert_official_vae_d4(folder / "vae.ckpt"), unet=ce_unet, text_encoder=te, tokenizer=tok,
                         scheduler=sched, architecture="tvt", timestep=GENERATOR_TIMESTEP, base_model=base, prompt=prompt)

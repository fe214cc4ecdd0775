"""Scene-text SR training (paper Sec. 4.1, Table 3): the one-step TVT recipe on RealCE's real LR/HR pairs.

    RealCE train pair --text-keeping 512 crop--> HR crop, LR crop (the real 13 mm LR) --bicubic--> lr_up
      --> the ISR generator and losses, unchanged (tvt.train.isr: L2 + 2 LPIPS + VSD, CE-UNet LoRA)

Paper: "we utilize the RealCE training set as our training data"; everything else is the Real-ISR recipe
("For both Real-ISR and STISR experiments, we utilize the SD 2.1-base..."). What differs from ISRStage: the data
(real pairs, no synthetic degradation, no flips: mirrored text is not text, crops that keep a text line whole),
and validation on RealCE test crops with the recognition metrics (ACC/NED, tvt.text) beside PSNR.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .isr import ISRConfig, ISRDataConfig, ISRStage, one_step_train_config
from .train_config import TrainConfig


@dataclass
class STISRDataConfig(ISRDataConfig):
    sources: list = field(default_factory=list)  # unused: the pairs below are the training data
    train_hr: str = "${data:RealCE/train/HR}"  # RealCE's GT (52 mm), as prepare_data --realce arranges it
    train_lr: str = "${data:RealCE/train/LR}"  # the real LR (13 mm, x1/4), matched by file stem
    train_annos: str = "${data:RealCE/train/annos}"  # text-line polygons: crops keep one line whole
    use_hflip: bool = False  # mirrored text is not text
    val_hr: Optional[str] = "${data:RealCE/test/HR}"  # validation pairs (null: no validation)
    val_lr: Optional[str] = "${data:RealCE/test/LR}"
    val_annos: Optional[str] = "${data:RealCE/test/annos}"  # their text lines, for ACC/NED
    val_crop: int = 512  # validation on one text-keeping crop per image
    recognizer: str = "ppocr"  # ACC/NED at validation (tvt.text.recognizers)


@dataclass
class STISRConfig(ISRConfig):
    data: STISRDataConfig = field(default_factory=STISRDataConfig)
    train: TrainConfig = field(default_factory=lambda: one_step_train_config("stisr"))


class STISRStage(ISRStage):
    """ISRStage on RealCE pairs, validated with ACC/NED."""

    Config = STISRConfig
    name = "stisr"

    def build_train_dataset(self):
        from ..data.realce import TextPairDataset

        d = self.cfg.data
        return TextPairDataset(d.train_hr, d.train_lr, d.train_annos, crop_size=d.crop_size, seed=self.cfg.train.seed)

    def sample_transform(self):
        return None  # the LR is real: nothing to synthesise

    def val_crops(self) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The first ``num_val`` test pairs, one text-keeping crop each (fixed): HR (N, 3, C, C), LR (N, 3, C/4, C/4),
        {name: (lines in the crop, [])}."""
        from ..data.datasets import pad_to
        from ..data.realce import lines_in_crop, text_keeping_crop
        from ..io import list_images, pil_to_tensor, read_image
        from ..text.protocol import read_annotations

        d, size = self.cfg.data, self.cfg.data.val_crop
        hrs, lrs, annotations = [], [], {}
        for i, path in enumerate(list_images(d.val_hr)[: d.num_val]):
            hr = pad_to(pil_to_tensor(read_image(path)), size)
            lr = pad_to(pil_to_tensor(read_image(Path(d.val_lr) / path.name)), size // 4)
            lines, skips = read_annotations(Path(d.val_annos) / f"{path.stem}.txt")
            top, left = text_keeping_crop([ln.polygon for ln in lines], hr.shape[1], hr.shape[2], size, 4,
                                          np.random.default_rng([self.cfg.train.seed, i]))
            hrs.append(hr[:, top:top + size, left:left + size])
            lrs.append(lr[:, top // 4:(top + size) // 4, left // 4:(left + size) // 4])
            annotations[path.stem] = (lines_in_crop(lines, top, left, size), skips)
        return torch.stack(hrs), torch.stack(lrs), annotations

    @torch.no_grad()
    def validate(self, step: int, run_dir: Path) -> dict[str, float]:
        if not (self.cfg.data.val_hr and self.cfg.data.val_lr and self.cfg.data.val_annos):
            return {}
        from ..metrics.image import psnr_y
        from ..text.evaluate import score_lines

        device = self.accelerator.device
        hr, lr, annotations = self.val_crops()
        hr, lr = hr.to(device), lr.to(device)
        lr_up = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1) * 2 - 1
        emb, _ = self.embed(lr)  # tags from the LR image at inference
        self.generator.eval()
        sr = ((self.accelerator.unwrap_model(self.generator)(lr_up, emb)[0] + 1) / 2).clamp(0, 1)
        self.generator.train()
        text = score_lines(dict(zip(annotations, sr.float().cpu())), annotations, self.cfg.data.recognizer)["summary"]
        if self.accelerator.is_main_process and self.cfg.train.tracker == "tensorboard":
            writer = self.accelerator.get_tracker("tensorboard").writer
            writer.add_images("val/bicubic_sr_hr", torch.cat([(lr_up + 1) / 2, sr, hr], dim=-1).cpu(), step)
        return {"psnr_y": float(psnr_y(sr, hr).mean()), "ocr_acc": text["ocr_acc"], "ocr_ned": text["ocr_ned"],
                "ocr_lines": float(text["ocr_lines"])}

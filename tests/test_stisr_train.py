"""STISR training (configs/stisr.yaml's stage) on tiny models: real pairs with text-keeping crops through the ISR
recipe, validation logging ACC/NED with the real PP-OCR recognizer, and the paper config loads."""
import json
import shutil
from pathlib import Path

from tvt.config import load_config
from tvt.train.stisr import STISRConfig, STISRStage
from tvt.train.trainer import Trainer

from conftest import SAMPLES

TEXT = SAMPLES / "text"
ROOT = Path(__file__).resolve().parents[1]


def test_stisr_trains_on_tiny_models_and_validates_with_acc_ned(tmp_path, tiny_sd, tiny_vae_d4):
    out = tmp_path / "runs"
    shutil.copytree(tiny_vae_d4, out / "000-vae_stage2" / "export")
    cfg = load_config(STISRConfig, [
        f"sd_model={tiny_sd}", "vae_d4=latest:vae_stage2", f"data.train_hr={TEXT / 'HR'}", f"data.train_lr={TEXT / 'LR'}",
        f"data.train_annos={TEXT / 'annos'}", "data.crop_size=128", f"data.val_hr={TEXT / 'HR'}",
        f"data.val_lr={TEXT / 'LR'}", f"data.val_annos={TEXT / 'annos'}", "data.val_crop=256", "data.num_val=1",
        "loss.lpips_backbone=random", "loss.cfg_scale=2.0", "prompt.extractor=fixed", "inference_prompt.extractor=fixed",
        "train.batch_size=2", "train.grad_accum=1", "train.max_steps=2", "train.val_every=2", "train.ckpt_every=2",
        "train.tracker=none", f"train.output_dir={out}", "train.num_workers=0"])
    stage = STISRStage(cfg)
    run = Trainer(stage).fit()
    item = stage.train_dataset[0]
    assert item["lr"].shape == (3, 32, 32) and item["lr_up"].shape == (3, 128, 128)
    assert stage.sample_transform() is None  # no synthetic degradation
    val = [json.loads(line) for line in (run / "val.jsonl").read_text().splitlines()]
    assert val[-1]["step"] == 2 and val[-1]["ocr_lines"] == 5  # en_01: its 5 lines, all inside the 256 crop
    assert 0 <= val[-1]["ocr_acc"] <= 1 and 0 <= val[-1]["ocr_ned"] <= 1 and "psnr_y" in val[-1]
    assert (run / "export").is_dir()


def test_paper_config_loads():
    cfg = load_config(STISRConfig, ["--config", str(ROOT / "configs" / "stisr.yaml")])
    assert cfg.data.use_hflip is False and cfg.data.crop_size == 512 and cfg.train.run_name == "stisr"
    assert cfg.data.train_hr.endswith("RealCE/train/HR") and cfg.data.val_annos.endswith("RealCE/test/annos")
    assert cfg.train.lr == 5e-5 and cfg.train.batch_size * cfg.train.grad_accum * 4 == 16  # 4 GPUs, as Real-ISR

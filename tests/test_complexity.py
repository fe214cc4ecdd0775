import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"vae_d8", "vae_d4", "vae_v1", "vae_v2", "unet_sd21_64", "unet_sd21_128", "ce_unet_128", "text_encoder",
        "osediff_total", "tvt_total", "tagger", "osediff_total_with_tagger", "tvt_total_with_tagger"}


def test_complexity_json_matches_paper(tmp_path):
    out = tmp_path / "c.json"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "complexity.py"), "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert set(data) == KEYS
    assert abs(data["vae_d4"]["params"] / 15.2e6 - 1) < 0.02 and abs(data["vae_d8"]["params"] / 83.7e6 - 1) < 0.02
    assert abs(data["vae_d4"]["flops"] / 1.1e12 - 1) < 0.05 and abs(data["vae_d8"]["flops"] / 1.8e12 - 1) < 0.05
    assert abs(data["ce_unet_128"]["flops"] / 0.73e12 - 1) < 0.05
    assert abs(data["unet_sd21_128"]["flops"] / 1.35e12 - 1) < 0.05
    assert data["tvt_total"]["flops"] < data["osediff_total"]["flops"]
    # Table 4's whole-pipeline FLOPs, the DAPE tagger's Swin-L image encoder (timm, meta device) included
    assert abs(data["tvt_total_with_tagger"]["flops"] / 1.97e12 - 1) < 0.01
    assert abs(data["osediff_total_with_tagger"]["flops"] / 2.27e12 - 1) < 0.02
    assert "paper" in res.stdout

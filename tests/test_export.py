"""The export folder's integrity: it lists what it holds, a missing or damaged part is refused naming the file
(never replaced by the base model's weights in silence), and its files are as readable as the rest of a run."""
import json
import os
import shutil
import stat

import pytest

from tvt.errors import DamagedWeightsError, MissingWeightsError
from tvt.export import CONFIG_NAME, TRAINABLE_NAME, load_tvt_export, save_tvt_export
from tvt.models.lora import LORA_WEIGHT_NAME

VAE_WEIGHTS = "vae_d4/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def export_dir(tiny_sd, tiny_vae_d4, tmp_path_factory):
    """A tiny TVT export as training writes it: LoRA, the CE-UNet's fully trained layers, VAE-D4."""
    from tvt.models.ce_unet import build_ce_unet_from_sd, load_sd_unet
    from tvt.models.lora import add_ce_unet_lora
    from tvt.models.vae import load_vae_d4

    unet = build_ce_unet_from_sd(load_sd_unet(tiny_sd))
    add_ce_unet_lora(unet)
    return save_tvt_export(tmp_path_factory.mktemp("export") / "exp", ce_unet=unet, vae=load_vae_d4(tiny_vae_d4),
                           base_model=str(tiny_sd))


def _copy(export_dir, tmp_path, *, unlisted=False):
    """A copy of the export; ``unlisted``: as written before exports listed their files."""
    copy = shutil.copytree(export_dir, tmp_path / "copy")
    if unlisted:
        cfg = json.loads((copy / CONFIG_NAME).read_text())
        del cfg["files"]
        (copy / CONFIG_NAME).write_text(json.dumps(cfg))
    return copy


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _one_line(err, *words):
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_export_lists_every_file_it_holds(export_dir):
    cfg = json.loads((export_dir / CONFIG_NAME).read_text())
    on_disk = {p.relative_to(export_dir).as_posix(): p.stat().st_size for p in export_dir.rglob("*")
               if p.is_file() and p.name != CONFIG_NAME}
    assert cfg["files"] == on_disk and {LORA_WEIGHT_NAME, TRAINABLE_NAME, VAE_WEIGHTS} <= set(on_disk)


@pytest.mark.parametrize("deleted", [[LORA_WEIGHT_NAME], [TRAINABLE_NAME], [LORA_WEIGHT_NAME, TRAINABLE_NAME]])
def test_missing_trained_weights_are_refused_naming_the_file(deleted, export_dir, tmp_path):
    copy = _copy(export_dir, tmp_path)
    for name in deleted:
        (copy / name).unlink()
    with pytest.raises(MissingWeightsError) as err:
        load_tvt_export(copy)
    _one_line(err, str(copy), *deleted, "missing")


def test_export_written_before_the_list_still_needs_its_fully_trained_layers(export_dir, tmp_path):
    copy = _copy(export_dir, tmp_path, unlisted=True)
    (copy / TRAINABLE_NAME).unlink()
    with pytest.raises(MissingWeightsError) as err:
        load_tvt_export(copy)
    _one_line(err, TRAINABLE_NAME, "missing")


@pytest.mark.parametrize("unlisted", [False, True], ids=["listed", "unlisted"])
@pytest.mark.parametrize("damaged", [LORA_WEIGHT_NAME, TRAINABLE_NAME, VAE_WEIGHTS])
def test_truncated_export_files_are_named_as_damaged(damaged, unlisted, export_dir, tmp_path):
    """Cut short (a partial copy): one line naming the file as damaged, not a safetensors traceback nor
    "not found ... Download them"; also for exports without the list, from the safetensors header."""
    copy = _copy(export_dir, tmp_path, unlisted=unlisted)
    _truncate(copy / damaged)
    with pytest.raises(DamagedWeightsError) as err:
        load_tvt_export(copy)
    _one_line(err, str(copy / damaged), "damaged")
    assert "not found" not in str(err.value) and "Download" not in str(err.value)


def test_infer_reports_a_damaged_export_in_one_line(export_dir, tmp_path, capsys):
    from PIL import Image

    from tvt_scripts.infer import main

    copy = _copy(export_dir, tmp_path)
    _truncate(copy / LORA_WEIGHT_NAME)
    (tmp_path / "in").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "in" / "x.png")
    assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and LORA_WEIGHT_NAME in err and "damaged" in err
    assert not (tmp_path / "out").exists()


def test_export_files_are_readable_by_all(export_dir):
    """The safetensors library writes 0600; an export is read by other users and services like the rest of a run."""
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.relative_to(export_dir).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in export_dir.rglob("*")}
    assert modes == {name: (0o777 if (export_dir / name).is_dir() else 0o666) & ~umask for name in modes}

"""Arrange the paper's datasets under the data root from your downloads, and write the file lists configs read.

    python scripts/prepare_data.py                      # status: what is there, what is missing, where to get it
    python scripts/prepare_data.py --realsr ~/dl/RealSR --drealsr ~/dl/DRealSR --div2k ~/dl/StableSR/DIV2K_val \
        --lsdir ~/dl/LSDIR --ffhq ~/dl/ffhq/images1024x1024 --openimage ~/dl/openimages/train --realce ~/dl/RealCE

Test sets (RealSR, DRealSR and DIV2K-val: the crops StableSR released, as the paper and OSEDiff use them) are
linked (or copied: --link false) as <root>/<name>/{HR,LR}. --div2k_hr DIV2K_valid_HR builds a different, small
set of ours, DIV2K-centre-crops (100 centre crops), whose numbers do not compare with the paper's DIV2K-val.
--realce DIR builds RealCE/{test,train}/{HR,LR,annos} from the RealCE download (Table 3, STISR training).
Training sets (LSDIR with image sizes, FFHQ-10k: the first 10,000 in name order, OpenImage) get a file list
under <root>/lists/.
The data root is TVT_DATA, else data/ of the checkout; --data_root writes elsewhere (then export TVT_DATA).
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tvt.data.catalog import build_centre_crops, catalog, install_paired, missing_datasets, write_file_list
from tvt.roots import data_root
from tvt_scripts._cli import command


@dataclass
class PrepareConfig:
    data_root: Optional[str] = None  # where to arrange the sets (default: TVT_DATA, else data/ of the checkout)
    realsr: Optional[str] = None  # downloaded RealSR test crops (HR/LR, test_HR/test_LR or gt/lq subfolders)
    drealsr: Optional[str] = None  # downloaded DRealSR test crops (same layouts)
    div2k: Optional[str] = None  # StableSR's released DIV2K-val (3,000 HR/LR pairs): the paper's test set
    div2k_hr: Optional[str] = None  # DIV2K_valid_HR: builds our DIV2K-centre-crops (100 pairs; not the paper's set)
    lsdir: Optional[str] = None  # LSDIR training images (any depth)
    ffhq: Optional[str] = None  # FFHQ images (the first 10,000 in name order are listed)
    openimage: Optional[str] = None  # OpenImage training images
    realce: Optional[str] = None  # the RealCE download (train/ and val/ with 13mm, 52mm, annotations): builds both splits
    link: bool = True  # symlink test sets into the root (false: copy)


@command(PrepareConfig)
def main(cfg: PrepareConfig) -> int:
    root = Path(cfg.data_root).expanduser().resolve() if cfg.data_root else data_root()
    for name, src in (("RealSR", cfg.realsr), ("DRealSR", cfg.drealsr)):
        if src:
            print(f"{name}: {install_paired(name, src, root, cfg.link)}")
    if cfg.div2k:
        print(f"DIV2K-val: {install_paired('DIV2K-val', cfg.div2k, root, cfg.link)}")
    if cfg.div2k_hr:
        manifest = build_centre_crops("DIV2K-centre-crops", cfg.div2k_hr, root)
        print(f"DIV2K-centre-crops: built {len(manifest['sources'])} pairs from {cfg.div2k_hr} (not the paper's DIV2K-val)")
    if cfg.realce:
        from tvt.data.realce import prepare_realce

        counts = prepare_realce(cfg.realce, root / "RealCE")
        print(f"RealCE: {counts} pairs -> {root / 'RealCE'} (LR: the 13 mm image x1/4, as Real-CE)")
    for name, src, limit in (("LSDIR", cfg.lsdir, None), ("FFHQ-10k", cfg.ffhq, 10_000), ("OpenImage", cfg.openimage, None)):
        if src:
            print(f"{name}: list {write_file_list(name, src, root, limit)}")
    missing = missing_datasets(root)
    print(f"data root {root}: " + (f"{len(catalog()) - len(missing)} of {len(catalog())} datasets ready"))
    for line in missing.values():
        print(f"  missing {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

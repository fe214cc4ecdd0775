"""Arrange the paper's datasets under the data root from your downloads, and write the file lists configs read.

    python scripts/prepare_data.py                      # status: what is there, what is missing, where to get it
    python scripts/prepare_data.py --realsr ~/dl/RealSR --drealsr ~/dl/DRealSR --div2k ~/dl/DIV2K_valid_HR \
        --lsdir ~/dl/LSDIR --ffhq ~/dl/ffhq/images1024x1024 --openimage ~/dl/openimages/train

Test sets (RealSR, DRealSR, DIV2K-val) are linked (or copied: --link false) as <root>/<name>/{HR,LR}; a DIV2K
folder without HR/LR pairs is taken as DIV2K_valid_HR and the synthetic test set is built from it. Training sets
(LSDIR, FFHQ-10k: the first 10,000 in name order, OpenImage) get a file list under <root>/lists/.
The data root is TVT_DATA, else data/ of the checkout; --data_root writes elsewhere (then export TVT_DATA).
"""
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tvt.data.catalog import (catalog, data_root, find_pair_layout, install_paired, missing_datasets,
                              write_file_list)
from tvt_scripts._cli import command


@dataclass
class PrepareConfig:
    data_root: Optional[str] = None  # where to arrange the sets (default: TVT_DATA, else data/ of the checkout)
    realsr: Optional[str] = None  # downloaded RealSR test crops (HR/LR, test_HR/test_LR or gt/lq subfolders)
    drealsr: Optional[str] = None  # downloaded DRealSR test crops (same layouts)
    div2k: Optional[str] = None  # the DIV2K-val test set (HR/LR), or DIV2K_valid_HR to build it from
    lsdir: Optional[str] = None  # LSDIR training images (any depth)
    ffhq: Optional[str] = None  # FFHQ images (the first 10,000 in name order are listed)
    openimage: Optional[str] = None  # OpenImage training images
    link: bool = True  # symlink test sets into the root (false: copy)


@command(PrepareConfig)
def main(cfg: PrepareConfig) -> int:
    root = Path(cfg.data_root).expanduser().resolve() if cfg.data_root else data_root()
    for name, src in (("RealSR", cfg.realsr), ("DRealSR", cfg.drealsr)):
        if src:
            print(f"{name}: {install_paired(name, src, root, cfg.link)}")
    if cfg.div2k:
        if find_pair_layout(Path(cfg.div2k).expanduser()):
            print(f"DIV2K-val: {install_paired('DIV2K-val', cfg.div2k, root, cfg.link)}")
        else:
            from tvt.data.testset import make_testset

            out = catalog()["DIV2K-val"].folder(root)
            manifest = make_testset(cfg.div2k, out, size=512, seed=0)
            print(f"DIV2K-val: built {len(manifest['sources'])} pairs from {cfg.div2k} -> {out}")
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

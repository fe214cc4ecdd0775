"""What this machine has: every weight file the project can use (where it is looked for, present or not, size,
sha256, which commands need it), the datasets under the data root, and whether the model hub is reachable.
Offline it is the first thing to run. --download fetches what is missing with the loaders' own clients (the
HuggingFace hub, torch.hub), saying what goes where: nothing is ever downloaded silently.

    python scripts/doctor.py                         # status
    python scripts/doctor.py --download vgg16        # fetch one weight (repeat, or --download all)
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys
from dataclasses import dataclass, field

from tvt.data.catalog import catalog, missing_datasets
from tvt.errors import InputError
from tvt.hub import offline
from tvt.roots import data_root, weights_root
from tvt.weights import WEIGHTS, WEIGHTS_BY_NAME, fetch
from tvt_scripts._cli import command


@dataclass
class DoctorConfig:
    download: list = field(default_factory=list)  # weights to fetch by name, or all (the missing ones)
    checksums: bool = True  # sha256 of present files (a few seconds per GB)
    metrics: bool = True  # also try to build each Table 2 metric (pyiqa weights)


@command(DoctorConfig)
def main(cfg: DoctorConfig) -> int:
    wanted = [w for w in WEIGHTS if cfg.metrics or not w.name.startswith("pyiqa:")]
    unknown = set(cfg.download) - set(WEIGHTS_BY_NAME) - {"all"}
    if unknown:
        raise InputError(f"unknown weights {sorted(unknown)}; known: {', '.join(WEIGHTS_BY_NAME)}")
    print(f"hub: {'NOT reachable (offline): loaders use local files only' if offline() else 'reachable'}")
    print(f"weights root: {weights_root()} (TVT_WEIGHTS); data root: {data_root()} (TVT_DATA)\n")
    missing = 0
    for w in wanted:
        status = w.status(cfg.checksums)
        if not status.present and ("all" in cfg.download or w.name in cfg.download):
            fetch(w)
            status = w.status(cfg.checksums)
        missing += not status.present
        size = f"{status.size / 1e6:,.1f} MB" if status.size else ""
        mark = "ok     " if status.present else "MISSING"
        print(f"{mark} {w.name:<18} {w.what}\n        where: {status.where}" + (f"  {size}" if size else "")
              + (f"  sha256 {status.sha256[:16]}" if status.sha256 else "") + (f"  ({status.detail})" if status.detail else "")
              + f"\n        needed by: {w.needed_by}\n        source: {w.source}")
    absent = missing_datasets()
    print(f"\ndatasets: {len(catalog()) - len(absent)} of {len(catalog())} under {data_root()}"
          + "".join(f"\n  missing {line}" for line in absent.values()))
    print(f"\n{missing} weight file(s) missing" + (": see `source` above, or --download NAME" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

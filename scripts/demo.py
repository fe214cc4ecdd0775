"""`make demo`: python scripts/demo.py [--config configs/demo.yaml] [key=value ...]"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the toy run needs no hub; real weights come from local folders

from tvt.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

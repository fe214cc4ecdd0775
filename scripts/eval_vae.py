"""python scripts/eval_vae.py --vae PATH [NAME=PATH ...] --data DIR [--d8 SD_PATH]"""
import sys

from tvt.train.vae_eval import main

if __name__ == "__main__":
    sys.exit(main())

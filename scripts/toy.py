"""The toy recipe (tvt.demo.toy): a tiny VAE-D8 teacher, Transfer VAE Training stages 1 and 2, then one-step ISR,
on the bundled samples with tiny random SD parts; a CPU in minutes, no weights. It checks the machinery, not the
paper's quality.

    python scripts/toy.py                       # runs/tiny_sd and runs/NNN-tiny_* in the current folder
    python scripts/toy.py work=/tmp/toy steps.isr=400

Afterwards each tiny config runs on its own from the same folder (it reads runs/tiny_sd and latest:tiny_*), e.g.
``python scripts/train_isr.py --config configs/tiny/isr.yaml train.max_steps=400``.
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tvt.demo.toy import VAE_STAGES, ToySteps, ship_vaes, train_toy
from tvt.errors import ConfigError
from tvt_scripts._cli import command


@dataclass
class ToyConfig:
    work: str = "."  # the toy runs go to work/runs, the tiny SD folder to work/runs/tiny_sd
    steps: ToySteps = field(default_factory=ToySteps)
    train_hr: Optional[str] = None  # HR images every stage trains on (default: the tiny configs', the DRealSR samples)
    vaes: Optional[str] = None  # start from shipped toy VAEs (e.g. data/samples/toy) instead of training them
    isr: bool = True  # false: stop after the VAEs
    set: list = field(default_factory=list)  # per-stage overrides, "<stage>:<key>=<value>" (stage: teacher, stage1, ...)
    ship: Optional[str] = None  # also write the VAEs and their loss logs here (what vaes= reads)


@command(ToyConfig)
def main(cfg: ToyConfig) -> int:
    data = {s: [f"data.sources=[{cfg.train_hr}]"] for s in (*VAE_STAGES, "isr")} if cfg.train_hr else {}
    for item in cfg.set:
        stage, sep, override = str(item).partition(":")
        if not sep or stage not in (*VAE_STAGES, "isr") or "=" not in override:
            raise ConfigError(f"set: expected <stage>:<key>=<value> with a stage of {(*VAE_STAGES, 'isr')}, got '{item}'")
        data.setdefault(stage, []).append(override)
    toy = train_toy(Path(cfg.work), cfg.steps, data, isr=cfg.isr, vaes=Path(cfg.vaes) if cfg.vaes else None)
    print("toy runs:\n" + "\n".join(f"  {name:8s} {run}" for name, run in toy.runs.items()))
    if cfg.isr:
        print(f"toy model (an export TVTPipeline.from_pretrained loads): {toy.model}")
    if cfg.ship:
        recipe = " ".join(f"steps.{k}={v}" for k, v in vars(cfg.steps).items() if v is not None)
        recipe += f" train_hr={cfg.train_hr}" if cfg.train_hr else ""
        recipe += "".join(f" --set {item}" for item in cfg.set)
        print(f"toy VAEs written to {ship_vaes(toy, Path(cfg.ship), f'python scripts/toy.py {recipe} isr=false ship=DIR')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One-step TVT Real-ISR training: python scripts/train_isr.py --config configs/isr.yaml [key=value ...]"""
from tvt.train.core import main
from tvt.train.isr import ISRStage

if __name__ == "__main__":
    main(ISRStage)

"""Train a classifier of SM-only vs SM + dark-matter histogram ensembles.

    python train.py signal=spin2_onshell snr=1.0 -m
    python train.py snr=0.2,0.5,1,2 signal=spin1_onshell,spin2_onshell -m
"""

import hydra
from omegaconf import DictConfig

from dmlhc.train import ConfigError, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        return train(cfg)
    except ConfigError as err:
        raise SystemExit(f"dmlhc: configuration error: {err}") from None


if __name__ == "__main__":
    main()

"""Train a classifier of SM-only vs SM + dark-matter histogram ensembles.

    python train.py signal=spin2_onshell snr=1.0 -m
    python train.py snr=0.2,0.5,1,2 signal=spin1_onshell,spin2_onshell -m
    python train.py experiment=fig7 -m
"""

import sys

import hydra
from omegaconf import DictConfig

from dmlhc.errors import CONFIG_ERROR_EXIT, ConfigError
from dmlhc.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        return train(cfg)
    except ConfigError as err:
        print(f"dmlhc: configuration error: {err}", file=sys.stderr)
        sys.exit(CONFIG_ERROR_EXIT)


if __name__ == "__main__":
    main()

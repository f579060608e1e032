"""Train a classifier of SM-only vs SM + dark-matter histogram ensembles.

    python train.py signal=spin2_onshell snr=1.0 -m
    python train.py snr=0.2,0.5,1,2 signal=spin1_onshell,spin2_onshell -m
    python train.py experiment=fig7 -m
"""

import hydra
from omegaconf import DictConfig

from dmlhc.errors import reported_as_exit_codes
from dmlhc.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    with reported_as_exit_codes():  # a user error: one line and its exit code (dmlhc/errors.py), no traceback
        return train(cfg)


if __name__ == "__main__":
    main()

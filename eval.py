"""Re-test a trained classifier on new ensembles or files, as a new MLflow run.

    python eval.py run_id=<MLflow run id>                 the run's data settings and best checkpoint
    python eval.py run_id=<id> data.data_seed=7 snr=0.5   other ensembles
    python eval.py ckpt_path=path/to/best.ckpt signal=spin2_onshell snr=1
"""

import hydra
from omegaconf import DictConfig

from dmlhc.errors import reported_as_exit_codes
from dmlhc.eval import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    with reported_as_exit_codes():  # a user error: one line and its exit code (dmlhc/errors.py), no traceback
        return evaluate(cfg)


if __name__ == "__main__":
    main()

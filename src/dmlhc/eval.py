"""The job behind ``python eval.py``: re-test a trained classifier on new ensembles or files, as a new MLflow run.

``run_id=<id>``: the training run's ``config.yaml`` and ``checkpoints/best.ckpt`` artifacts are read from MLflow
(the job folder of the training may be gone); every data and model setting is the training's
(:data:`RESTORED`), except the keys given on the command line (``data.data_seed=7``, ``snr=0.5``,
``signal.files=[...]``, ``signal=spin2_onshell``); the new run goes into the training run's experiment (unless
``logger.mlflow.experiment_name=`` is given). ``ckpt_path=<file>``: a checkpoint, with the data settings of
``conf/eval.yaml`` and the command line. Either way the network is the checkpoint's; the new run (``<name>_eval``,
tagged ``dmlhc.source_run`` and ``dmlhc.checkpoint``) gets ``test/auc``, ``test/auc_optimal`` and the plots, and the
job ends with the same summary as a training. Returns ``test/auc``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from dmlhc.config import instantiate, instantiate_callbacks, prepare_process
from dmlhc.errors import ConfigError
from dmlhc.models.architectures import ParametrisedDNN
from dmlhc.tracking.runs import RunGroup, architecture_name, derived_params
from dmlhc.tracking.secrets import redact
from dmlhc.tracking.store import resolve_tracking_uri
from dmlhc.train import new_trainer, scalar_metrics

RESTORED = ("snr", "seed", "signal", "background", "binning", "data", "generation", "architecture", "model")
CHECKPOINT_ARTIFACT = "checkpoints/best.ckpt"


def evaluate(cfg: DictConfig, overrides: list[str] | None = None) -> float:
    """Test the checkpoint of ``cfg.run_id`` or ``cfg.ckpt_path``; ``overrides``: the command line's (default: the
    Hydra job's), which beat a training run's settings."""
    cfg, checkpoint, source = resolve(cfg, command_line_keys(overrides))
    prepare_process(cfg)
    datamodule = instantiate("data", cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    model = load_model(cfg, checkpoint, datamodule)
    if source is None and isinstance(model.hparams.get("net"), dict):  # the network the checkpoint holds
        OmegaConf.update(cfg, "architecture", model.hparams["net"], merge=False, force_add=True)
    tags = {"dmlhc.checkpoint": str(redact(checkpoint if source is None else f"runs:/{source.info.run_id}/"
                                                                           f"{CHECKPOINT_ARTIFACT}"))}
    if source is not None:
        tags["dmlhc.source_run"] = source.info.run_id
    architecture = source.data.tags.get("dmlhc.architecture") if source is not None else None
    runs = RunGroup(cfg, derived_params(cfg, datamodule), tags=tags, suffix="_eval",
                    architecture=architecture or architecture_name(cfg, hydra_choice=False))
    for seed, logger in runs:
        pl.seed_everything(seed, workers=True)
        datamodule.seed = seed
        trainer = new_trainer(cfg, logger, instantiate_callbacks(cfg.callbacks), enable_checkpointing=False)
        trainer.test(model, datamodule=datamodule, verbose=False)
        runs.record(scalar_metrics(trainer), trainer)
    runs.finish("test/auc")
    return runs.results[-1]["test/auc"]


def command_line_keys(overrides: list[str] | None = None) -> list[str]:
    """The config keys (or groups) the command line sets: ``snr``, ``data.data_seed``, ``signal``."""
    if overrides is None:
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return [o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)]


def resolve(cfg: DictConfig, given: list[str]) -> tuple[DictConfig, str, Any]:
    """(config to test with, checkpoint file, the MLflow source run or None)."""
    if bool(cfg.get("run_id")) == bool(cfg.get("ckpt_path")):
        raise ConfigError("give run_id=<MLflow run id> (a training run: its data settings and checkpoint) or "
                          "ckpt_path=<checkpoint file>, one of them")
    if cfg.get("ckpt_path"):
        if not Path(cfg.ckpt_path).is_file():
            raise ConfigError(f"ckpt_path={cfg.ckpt_path}: no such file; give a checkpoint (.ckpt) of train.py, or "
                              f"run_id=<id> of its MLflow run")
        return cfg, str(cfg.ckpt_path), None
    uri = resolve_tracking_uri(cfg.logger.mlflow.tracking_uri)
    trained, checkpoint, run = fetch_run(uri, str(cfg.run_id), Path(cfg.paths.output_dir) / "source_run")
    cfg = restore(cfg, trained, given)
    if "logger.mlflow.experiment_name" not in given:  # beside the run it tests
        from mlflow import MlflowClient

        cfg.logger.mlflow.experiment_name = MlflowClient(uri).get_experiment(run.info.experiment_id).name
    return cfg, checkpoint, run


def fetch_run(uri: str, run_id: str, folder: Path, option: str = "run_id=",
              store_option: str = "logger.mlflow.tracking_uri=") -> tuple[DictConfig, str, Any]:
    """A training run of the store at ``uri``: its ``config.yaml`` as trained and its best checkpoint, both
    downloaded into ``folder``, and the MLflow run. ``option`` and ``store_option``: how the command line names the
    run and the store (``run_id=``, ``--run ``), for the messages; a store that does not exist is not created."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    fix = (f"copy the id from a training's summary or the MLflow UI, and point MLFLOW_TRACKING_URI (or "
           f"{store_option}) at its store")
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ConfigError(f"{option}{run_id}: no such run in {redact(uri)}, which does not exist; {fix}")
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"{option}{run_id}: no such run in {redact(uri)}; {fix}") from None
    folder.mkdir(parents=True, exist_ok=True)
    try:
        trained = OmegaConf.load(client.download_artifacts(run.info.run_id, "config.yaml", str(folder)))
        checkpoint = client.download_artifacts(run.info.run_id, CHECKPOINT_ARTIFACT, str(folder))
    except (MlflowException, OSError):
        children = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
        hint = (f"it is the parent of repeats: give one of its runs, {', '.join(c.info.run_id for c in children)}"
                if children else "train it again with callbacks.model_checkpoint enabled (the default)")
        raise ConfigError(f"{option}{run_id}: the run has no config.yaml and {CHECKPOINT_ARTIFACT} artifacts; "
                          f"{hint}") from None
    assert isinstance(trained, DictConfig)  # config.yaml is a mapping
    return trained, checkpoint, run


def restore(cfg: DictConfig, trained: Any, given: list[str]) -> DictConfig:
    """``cfg`` with the training's value of every key under :data:`RESTORED`, except the keys in ``given`` (and
    what is under them) and the keys of ``cfg`` that refer to another (``data.snr: ${snr}`` follows ``snr``)."""
    cfg = copy.deepcopy(cfg)

    def is_given(path: str) -> bool:
        return any(path == key or path.startswith(f"{key}.") for key in given)

    def is_reference(path: str) -> bool:
        parent, _, key = path.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return isinstance(node, DictConfig) and key in node and OmegaConf.is_interpolation(node, key)

    def walk(value: Any, path: str) -> None:
        if is_given(path) or is_reference(path):
            return
        current = OmegaConf.select(cfg, path, default=None)
        if isinstance(value, dict) and isinstance(current, DictConfig):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        else:
            OmegaConf.update(cfg, path, value, merge=False, force_add=True)

    plain = OmegaConf.to_container(trained, resolve=False)
    assert isinstance(plain, dict)  # config.yaml is a mapping
    for key in RESTORED:
        if key in plain:
            walk(plain[key], key)
    return cfg


def load_model(cfg: DictConfig, checkpoint: str, datamodule) -> Any:
    """The ``model`` config's LightningModule from ``checkpoint``, checked against the data it is to be tested on."""
    module: Any = hydra.utils.get_class(cfg.model._target_)
    model = module.load_from_checkpoint(checkpoint, map_location="cpu")
    if isinstance(getattr(model, "net", None), ParametrisedDNN):
        raise ConfigError("the checkpoint holds a parametrised network (one for every S/sqrt(B) of a grid, scored with "
                          "net(x, snr)); eval.py and dmlhc predict score networks of one S/sqrt(B): its run holds "
                          "test/auc/snr_<x> of every point, and experiments/parametrised.py tabulates them")
    shape, classes = model.hparams.get("input_shape"), model.hparams.get("n_classes")
    if shape is not None and tuple(shape) != tuple(datamodule.input_shape) or (
            classes is not None and classes != datamodule.n_classes):
        raise ConfigError(f"the checkpoint's network takes inputs of shape {tuple(shape or ())} into {classes} "
                          f"classes, the data gives {tuple(datamodule.input_shape)} and {datamodule.n_classes}: "
                          f"use the binning and task it was trained with (run_id=<id> restores them)")
    return model

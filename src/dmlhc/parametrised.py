"""One network for every S/sqrt(B) of a grid: the parametrised classifier.

    python train.py experiment=parametrised signal=spin1_onshell   # one network for Fig. 7's 18 points
    python experiments/parametrised.py                             # every benchmark; table vs per-point networks

A grid job (``grid.snr``, :mod:`dmlhc.grid`) whose architecture is ``parametrised_dnn`` trains ONE
:class:`~dmlhc.models.architectures.ParametrisedDNN`, told each histogram's S/sqrt(B), instead of one network per
point. Every step draws one batch of background histograms of B events, as the grid trainer does, and splits its
rows evenly over the points; a point's rows get its S signal events (SM + signal, half of them) or S more background
events (SM-only, B + S events), so the classes differ only in the (pT, eta) shape, as at a single point. Validation
on every point's own validation set (the one a single run of that point draws); early stopping and the best weights
on the mean over the points of ``val/auc`` (or ``val/loss``), with the trainer's and early stopping's settings of a
single run. Test: every point's test set with the best weights, the point's optimum beside it. The input
standardisation is the mixture of the points' training histograms.

One MLflow run per job, ``parametrised_<signal>_<architecture>_seed<seed>`` in the config's experiment, tagged
``dmlhc.parametrised``: the config (params and ``config.yaml``), the per-epoch means (``train/loss``,
``val/loss``, ``val/auc``), per point ``val/auc/snr_<x>`` (best epoch), ``test/auc/snr_<x>`` and
``test/auc_optimal/snr_<x>``, the table ``parametrised.csv`` (the columns of a grid's ``grid.csv``) and the
checkpoint (``checkpoints/best.ckpt``; ``Classifier.load_from_checkpoint`` rebuilds the network, which scores with
``net(x, snr)``).
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn import functional as F
from torchmetrics.functional.classification import binary_auroc

from dmlhc.callbacks import averaging_decay
from dmlhc.config import instantiate
from dmlhc.data.datamodule import EnsembleDataModule, _derive_seed
from dmlhc.data.ensembles import draw_counts, normalise
from dmlhc.grid import (
    EVAL_CHUNK,
    Network,
    StoppingRule,
    grid_table,
    optimum_metrics,
    point_config,
    update_average,
    write_rows,
)
from dmlhc.models.architectures import ParametrisedDNN
from dmlhc.models.classifier import make_optimiser
from dmlhc.tracking.reporter import pool_params
from dmlhc.tracking.runs import architecture_name, config_params, derived_params, save_checkpoint
from dmlhc.tracking.secrets import redact
from dmlhc.tracking.store import resolve_tracking_uri
from dmlhc.tracking.summary import write_result

log = logging.getLogger(__name__)


def train_parametrised(cfg: DictConfig, snrs: list[float], modules: list[EnsembleDataModule]) -> float:
    """Train one ParametrisedDNN over the points ``snrs`` (their DataModules set up); log and return its best
    ``optimized_metric`` (the mean over points)."""
    seed = int(cfg.seed)
    pl.seed_everything(seed, workers=True, verbose=False)
    classifier = instantiate("model", cfg.model, input_shape=modules[0].input_shape, n_classes=2)
    standardise = classifier.net.standardise
    if hasattr(standardise, "set_statistics"):
        standardise.set_statistics(*mixture_statistics(modules))
    network = Network(-1, seed, classifier)
    trainer = ParametrisedTrainer(cfg, snrs, modules, network)
    log.info("parametrised: one network for %d S/sqrt(B) points of %s", len(snrs), cfg.signal.name)
    started = time.perf_counter()
    trainer.fit()
    trained_s = time.perf_counter() - started
    rows = trainer.test()
    print(grid_table(rows), flush=True)
    print(f"parametrised: trained in {trained_s:.0f} s ({len(network.history)} epochs, best {network.best_epoch}); "
          f"largest gap {max(r['test/auc_optimal'] - r['test/auc'] for r in rows):.4f}", flush=True)
    run_id = log_parametrised(cfg, snrs, modules, network, rows, trained_s)
    write_result(Path(cfg.paths.output_dir), {
        "task": "binary", "signal": rows[0]["signal"], "snr": f"{len(snrs)} points",
        "architecture": architecture_name(cfg), "seed": str(seed),
        "status": f"parametrised: largest gap {max(r['test/auc_optimal'] - r['test/auc'] for r in rows):.4f}",
        "run_id": run_id, "output_dir": str(cfg.paths.output_dir)})
    objective = str(cfg.get("optimized_metric", "val/auc")).removeprefix("best_")
    return float(network.best.get(objective, float("nan")))


def mixture_statistics(modules: list[EnsembleDataModule]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-input mean and standard deviation of the points' training histograms taken together (each point's
    :meth:`~dmlhc.data.datamodule.EnsembleDataModule.input_statistics`, mixed with equal weights)."""
    statistics = [m.input_statistics() for m in modules]
    means = torch.stack([s[0] for s in statistics if s is not None])
    second = torch.stack([s[1] ** 2 + s[0] ** 2 for s in statistics if s is not None])
    mean = means.mean(dim=0)
    return mean, (second.mean(dim=0) - mean**2).clamp_min(0).sqrt()


class ParametrisedTrainer:
    """The training loop of one ParametrisedDNN over the points of a grid (module docstring)."""

    def __init__(self, cfg: DictConfig, snrs: list[float], modules: list[EnsembleDataModule], network: Network):
        self.cfg, self.snrs, self.modules, self.network = cfg, snrs, modules, network
        first = modules[0]
        self.per_point = max(2, 2 * (first.batch_size // (2 * len(snrs))))  # rows of each point per step, even
        self.steps = first.steps_per_epoch
        self.rule = StoppingRule.of(cfg, self.per_point * len(snrs) * self.steps)
        self.device = first.device
        ema = (cfg.get("callbacks") or {}).get("ema")
        self.ema_weight = 1 - averaging_decay(float(ema.get("decay", 0.999))) if ema else None
        self.bank_generator = torch.Generator(device=self.device).manual_seed(_derive_seed(int(cfg.seed),
                                                                                          "parametrised bank"))
        self.point_generators = [torch.Generator(device=self.device).manual_seed(
            _derive_seed(int(cfg.seed), "parametrised", p)) for p in range(len(snrs))]
        half = self.per_point // 2
        self.labels = torch.cat([torch.ones(half), torch.zeros(self.per_point - half)]).repeat(len(snrs)).to(
            self.device)
        self.row_snr = torch.tensor(snrs, dtype=torch.float32).repeat_interleave(self.per_point).to(self.device)

    @property
    def net(self) -> ParametrisedDNN:
        return cast(ParametrisedDNN, self.network.classifier.net)

    def fit(self) -> None:
        net = self.net.to(self.device)
        optimiser = make_optimiser(str(self.cfg.model.optimizer), net.parameters(), lr=float(self.cfg.model.lr),
                                   weight_decay=float(self.cfg.model.weight_decay))
        averaged = copy.deepcopy(net) if self.ema_weight else net  # validated, checkpointed and tested
        for epoch in range(self.rule.max_epochs):
            started = time.perf_counter()
            net.train()
            total = 0.0
            for _ in range(self.steps):
                x = self.batch()
                loss = F.binary_cross_entropy_with_logits(net(x, self.row_snr).squeeze(-1), self.labels)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                if self.ema_weight is not None:
                    update_average(averaged, net, self.ema_weight)
                total += float(loss.detach())
            metrics = {"train/loss": total / self.steps} | self.evaluate(averaged, "val")
            if self.network.record(epoch, metrics, self.rule):
                self.network.best_state = {k: v.detach().clone() for k, v in averaged.state_dict().items()}
            log.info("parametrised epoch %d (%.1f s): val/auc %.4f (mean over points), best epoch %d", epoch + 1,
                     time.perf_counter() - started, metrics["val/auc"], self.network.best_epoch)
            if self.network.stopped:
                break
        net.load_state_dict(self.network.best_state)

    def batch(self) -> torch.Tensor:
        """One step's inputs (points x per_point rows, n_bins): a background batch of B events per histogram, each
        point's rows plus its S signal events (first half) or S background events."""
        first = self.modules[0]
        background = first.pools["background"].train
        half = self.per_point // 2
        x = draw_counts(background, first.n_background, len(self.labels), mode=first.mode,
                        generator=self.bank_generator)
        additions = []
        for module, generator in zip(self.modules, self.point_generators):
            signal = next(module.pools[name] for name in module.signal_sources).train
            additions += [draw_counts(signal, module.n_signal, half, mode=module.mode, generator=generator,
                                      subsets="redraw"),
                          draw_counts(background, module.n_signal, self.per_point - half, mode=module.mode,
                                      generator=generator, subsets="redraw")]
        x += torch.cat(additions)
        return normalise(x, first.normalisation, in_place=True)

    def evaluate(self, net: ParametrisedDNN, split: str) -> dict[str, float]:
        """``<split>/loss`` and ``<split>/auc`` of every point on its own set, and their means over the points."""
        net.eval()
        metrics: dict[str, float] = {}
        for snr, module in zip(self.snrs, self.modules):
            labelled = module.sets[split]
            with torch.no_grad():
                logits = torch.cat([net(labelled.x[i: i + EVAL_CHUNK], snr).squeeze(-1)
                                    for i in range(0, len(labelled.x), EVAL_CHUNK)])
            metrics[f"{split}/loss/snr_{snr:g}"] = float(F.binary_cross_entropy_with_logits(logits, labelled.y))
            metrics[f"{split}/auc/snr_{snr:g}"] = float(binary_auroc(torch.sigmoid(logits), labelled.y.long()))
        for key in ("loss", "auc"):
            values = [v for k, v in metrics.items() if k.startswith(f"{split}/{key}/")]
            metrics[f"{split}/{key}"] = sum(values) / len(values)
        return metrics

    def test(self) -> list[dict[str, Any]]:
        """The table of the points: test/auc with the best weights beside each point's optimum."""
        self.network.test = self.evaluate(self.net, "test")
        rows = []
        for snr, module in zip(self.snrs, self.modules):
            optimum = optimum_metrics(module, self.cfg)
            self.network.test |= {f"{k}/snr_{snr:g}": v for k, v in optimum.items()}
            rows.append({"signal": module.tracking_params()["signal"], "snr": snr,
                         "test/auc": self.network.test[f"test/auc/snr_{snr:g}"], "test/auc_std": float("nan"),
                         "repeats": 1, "test/auc_optimal": optimum["test/auc_optimal"],
                         "test/auc_optimal_std": optimum["test/auc_optimal_std"],
                         "val/auc": self.network.best[f"val/auc/snr_{snr:g}"],
                         "epochs": len(self.network.history), "best_epoch": self.network.best_epoch})
        return rows


def log_parametrised(cfg: DictConfig, snrs: list[float], modules: list[EnsembleDataModule], network: Network,
                     rows: list[dict[str, Any]], trained_s: float) -> str | None:
    """The network as one MLflow run (module docstring); returns its id (None without a logger)."""
    if not (cfg.get("logger") and cfg.logger.get("mlflow")):
        return None
    from mlflow.entities import Metric, Param

    first = modules[0]
    derived = derived_params(point_config(cfg, snrs[0]), first) | {"snr": "grid"}
    signal = derived["signal"]
    logger = instantiate("logger.mlflow", cfg.logger.mlflow,
                         run_name=f"parametrised_{signal}_{architecture_name(cfg)}_seed{cfg.seed}",
                         tags={"dmlhc.parametrised": "true", "dmlhc.task": "binary",
                               "dmlhc.architecture": architecture_name(cfg)})
    client, run_id = logger.experiment, logger.run_id
    uri = resolve_tracking_uri(cfg.logger.mlflow.tracking_uri)
    params = redact(config_params(cfg) | derived | pool_params(first) | {"logger.mlflow.tracking_uri": uri})
    params |= {"grid.snr": ",".join(f"{s:g}" for s in snrs), "points": len(snrs)}
    entries = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(entries), 100):
        client.log_batch(run_id, params=entries[start: start + 100])
    client.log_text(run_id, redact(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")
    steps = first.steps_per_epoch
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, (int(row["epoch"]) + 1) * steps) for row in network.history for k, v in row.items()
               if k in ("train/loss", "val/loss", "val/auc")]
    final = network.test | {f"best_{k}": v for k, v in network.best.items()} | {
        "epochs": len(network.history), "best_epoch": network.best_epoch, "train_seconds": trained_s,
        "max_gap": max(r["test/auc_optimal"] - r["test/auc"] for r in rows)}
    metrics += [Metric(k, float(v), now, len(network.history) * steps) for k, v in final.items()]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start: start + 1000])
    output = Path(cfg.paths.output_dir)
    client.log_artifact(run_id, str(write_rows(rows, output / "parametrised.csv")))
    save_checkpoint(logger, network.classifier, output / "checkpoints" / "parametrised.ckpt", network.best_epoch, steps)
    logger.finalize("success")
    return run_id

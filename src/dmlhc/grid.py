"""The grid trainer: every S/sqrt(B) point x repeat of one benchmark trained at once.

    python train.py signal=spin1_onshell grid.snr=[0.112,0.447,1.118] repeats=10
    python train.py experiment=fig7 -m            # one grid job per benchmark

``python train.py`` hands a job whose config has ``grid.snr`` (a list) to :func:`train_grid`.
It trains one binary network per (S/sqrt(B), seed) as one :class:`~dmlhc.models.stacked.StackedDNN`,
each network with its own initialisation (built exactly as ``python train.py snr=X seed=Y``
builds it), its own AdamW state (elementwise, so one optimiser over the stack is one per
network), its own early stopping and its own best checkpoint, and scores each on its point's
own fixed validation and test sets: the same ones a single run of that point draws
(``data_seed``). Networks that stop leave the stack, so the work follows the networks still
learning.
With ``architecture=parametrised_dnn`` the job trains ONE network, told S/sqrt(B), for all the points
instead (:mod:`dmlhc.parametrised`).

What is shared is work and the background part of the training stream: the event pools,
binning and the optimum's inputs are built once; every step takes one batch (drawn ten at a time) of histograms of
B background events, which every network uses, each seed with the rows in its own random
order (so a seed's SM + signal and SM-only rows come from different background histograms
than another seed's); each S/sqrt(B) point adds its own S signal events (SM + signal class) or
S more background events (SM-only class, B + S events). The additions nest across the points:
each step draws the largest S once per histogram, in random order, and a point with S events
takes the first S of them (:func:`~dmlhc.data.ensembles.draw_nested_counts`), so all points cost
one draw. Every network's stream has the law of a single run's; the seeds of a point are less
independent than separate runs (they share background histograms and additions, and differ in
pairing, initialisation and dropout), which the test of the grid against single runs bounds,
and the points' additions overlap (a smaller point's events are part of a larger one's).
In ``multinomial`` and ``poisson`` modes a sum B + S has exactly the law of a direct draw of
B + S events; in ``exact`` mode the two parts are each drawn without repetition but may share
an event, which raises a bin's variance by a relative 2 S B / ((B + S) N) for a train pool of
N events (1e-4 to 1e-2 on the paper's grid, B = 50k, N = 900k); validation and test sets
are exact. Training histograms are drawn and multiplied on the bins an event of the train pools
is in (434 of 900 for alp on the paper's binning: most high-pT bins hold none; the others are 0 in every
input), validation on the bins its set occupies. The training inputs themselves are never built
(:class:`~dmlhc.models.stacked.ComposedInputs`): the first layer is linear, so the background batch is
multiplied with every network's weights in one matrix product, each point's additions with its networks'
weights, and each network's rows are then taken in its seed's order and divided by their normalisers
(computed exactly from the parts, :func:`~dmlhc.data.ensembles.composed_scales`). Same numbers as building
the inputs, to float rounding.

Each network is one MLflow run with the params and metrics of a single run of its point
(``val/*`` per epoch, ``test/auc`` beside ``test/auc_optimal``, ``best_*``, ``epochs``,
``best_epoch``, the checkpoint artifact that ``eval.py run_id=...`` loads); with
``repeats`` > 1 the runs of a point are children of a point run carrying the repeat
statistic, as in a single job. All of them are children of one ``grid_...`` run, which
holds the table of the points (``grid.csv``) and the grid's speed. Per-run plots are left out
(``eval.py run_id=...`` makes them for any network).
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.nn import functional as F

from dmlhc.callbacks import averaging_decay
from dmlhc.config import instantiate, integer, number, prepare_process
from dmlhc.data.datamodule import EnsembleDataModule, _derive_seed
from dmlhc.data.ensembles import composed_scales, draw_counts, draw_nested_counts
from dmlhc.errors import ConfigError
from dmlhc.events.cache import atomic_target
from dmlhc.models.architectures import HistogramDNN, ParametrisedDNN
from dmlhc.models.classifier import make_optimiser
from dmlhc.models.stacked import ComposedInputs, StackedDNN, keep_networks, select_networks
from dmlhc.optimal import row_aucs
from dmlhc.tracking.reporter import pool_params
from dmlhc.tracking.runs import RunGroup, architecture_name, derived_params, save_checkpoint
from dmlhc.tracking.store import check_tracking_store, configured_tracking_uri, trimmed_statistic
from dmlhc.tracking.summary import write_result
from dmlhc.train import check_trainer

log = logging.getLogger(__name__)
BANK_BLOCK_STEPS = 10  # background batches drawn at once (10 x 256 histograms: ~1 MB of counts per 100 bins)
EVAL_CHUNK = 4096  # validation/test histograms per product (bounds memory: networks x chunk x first-layer width)


@dataclass
class Network:
    """One network of the grid: its point, seed, the Classifier it came from, and its training record."""

    point: int
    seed: int
    classifier: pl.LightningModule
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    best_epoch: int = 0
    wait: int = 0
    stopped: bool = False
    test: dict[str, float] = field(default_factory=dict)

    @property
    def net(self) -> HistogramDNN:
        return cast(HistogramDNN, self.classifier.net)

    def record(self, epoch: int, metrics: dict[str, float], rule: StoppingRule) -> bool:
        """The epoch's ``train/loss`` and ``val/*`` metrics into the history; early stopping as
        HistogramEarlyStopping and ModelCheckpoint (strict improvement) do. True when the epoch is the best so far (the
        caller keeps its weights)."""
        self.history.append({"epoch": epoch} | metrics)
        value, best = metrics[rule.monitor], self.best.get(rule.monitor)
        improved = best is None or (value > best if rule.maximise else value < best)
        if improved:
            self.best = {k: v for k, v in metrics.items() if k.startswith("val/")}
            self.best_epoch, self.wait = epoch + 1, 0
        else:
            self.wait += 1
        saturated = rule.maximise and metrics["val/auc"] >= 1.0  # at once: no later epoch can be strictly better
        if saturated or (self.wait >= rule.patience and epoch + 1 >= rule.min_epochs) or epoch + 1 >= rule.max_epochs:
            self.stopped = True
        return improved


@dataclass(frozen=True)
class StoppingRule:
    """When a network stops, from the ``callbacks.early_stopping`` and ``trainer`` configs, as a single run's."""

    monitor: str
    maximise: bool
    patience: float  # epochs without a strict improvement
    min_epochs: int
    max_epochs: int

    @classmethod
    def of(cls, cfg: DictConfig, histograms_per_epoch: int) -> StoppingRule:
        early = (cfg.get("callbacks") or {}).get("early_stopping") or {}
        monitor = str(early.get("monitor", "val/auc"))
        patience = (math.ceil(int(early.get("patience_histograms", 200_000)) / histograms_per_epoch) if early
                    else math.inf)
        max_epochs = int(cfg.trainer.max_epochs) if cfg.trainer.get("max_epochs") not in (None, -1) else 10**6
        return cls(monitor, monitor == "val/auc", patience, int(cfg.trainer.get("min_epochs") or 1), max_epochs)


def grid_points(cfg: DictConfig) -> list[float]:
    """The S/sqrt(B) values of ``grid.snr``, checked."""
    values = cfg.grid.snr
    if isinstance(values, (int, float, str)) or values is None or len(values) == 0:
        raise ConfigError(f"grid.snr={values!r}: give a list of S/sqrt(B) values, e.g. grid.snr=[0.112,0.447,1.118]")
    points = [number("grid.snr", v, minimum=0, fix="give S/sqrt(B) values >= 0") for v in values]
    if len(set(points)) != len(points):
        raise ConfigError(f"grid.snr={list(values)}: every S/sqrt(B) once")
    return points


def check_grid_config(cfg: DictConfig) -> None:
    """What the grid trainer trains: binary histogram tasks on a fresh stream, networks of architecture dnn."""
    if cfg.data.task != "binary":
        raise ConfigError(f"grid.snr with task {cfg.data.task!r}: the grid trainer trains binary tasks; "
                          "train other tasks one job per point (python train.py snr=A,B,... -m)")
    if cfg.data.get("dataset", "stream") != "stream":
        raise ConfigError("grid.snr with data.dataset=paper: the grid trainer draws fresh histograms "
                          "(data.dataset=stream); train the paper's fixed sets one job per point")
    if cfg.get("hparams_search") or cfg.get("optuna_trial"):
        raise ConfigError("grid.snr inside an Optuna search: search one point at a time (drop grid.snr)")


def point_config(cfg: DictConfig, snr: float) -> DictConfig:
    """``cfg`` as a single run of the point ``snr`` (no grid)."""
    point = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(point):
        point.snr = snr
        point.grid.snr = None
    return cast(DictConfig, point)


def train_grid(cfg: DictConfig) -> float:
    """Train every (grid.snr, seed) network of ``cfg`` at once (module docstring); returns the mean best
    ``optimized_metric`` over all networks."""
    snrs = grid_points(cfg)
    check_grid_config(cfg)
    repeats = integer("repeats", cfg.repeats, minimum=1, fix="train at least once")
    check_trainer(cfg, [])  # trainer.max_epochs >= 1 (or -1) and a trainer config Lightning accepts, as a single job
    prepare_process(cfg)
    ready = time.perf_counter()
    modules, probe = grid_modules(cfg, snrs)
    parametrised = isinstance(probe.net, ParametrisedDNN)
    if parametrised and repeats > 1:
        raise ConfigError(f"repeats={repeats} with architecture=parametrised_dnn: a job trains one network for the "
                          "whole grid; train more seeds as a sweep (seed=1,2,3 -m)")
    set_up(modules)
    if parametrised:
        from dmlhc.parametrised import train_parametrised

        return train_parametrised(cfg, snrs, modules)
    networks = []
    for p, module in enumerate(modules):
        statistics = module.input_statistics()
        for r in range(repeats):
            seed = int(cfg.seed) + r
            pl.seed_everything(seed, workers=True, verbose=False)  # the network a single run of this seed builds
            classifier = instantiate("model", cfg.model, input_shape=module.input_shape, n_classes=2)
            if statistics is not None and hasattr(classifier.net.standardise, "set_statistics"):
                classifier.net.standardise.set_statistics(*statistics)
            networks.append(Network(p, seed, classifier))
    log.info("grid: %d networks (%d S/sqrt(B) x %d seeds) of %s, data ready in %.0f s", len(networks), len(snrs),
             repeats, cfg.signal.name, time.perf_counter() - ready)
    started = time.perf_counter()
    GridTrainer(cfg, modules, networks).fit()
    trained_s = time.perf_counter() - started
    started = time.perf_counter()
    for p, module in enumerate(modules):
        test_point(module, [n for n in networks if n.point == p], cfg)
    log.info("grid: tested, with the optimum of every point, in %.0f s", time.perf_counter() - started)
    started = time.perf_counter()
    objective = log_grid(cfg, snrs, modules, networks, trained_s)
    log.info("grid: %d runs logged in %.0f s", len(networks), time.perf_counter() - started)
    return objective


def grid_modules(cfg: DictConfig, snrs: list[float]) -> tuple[list[EnsembleDataModule], pl.LightningModule]:
    """One DataModule per point of the grid and a probe of the model config (checked: a HistogramDNN, stacked, or a
    ParametrisedDNN, one network for the grid); the tracking store checked. Nothing drawn yet (:func:`set_up`)."""
    device = "cpu" if cfg.trainer.get("accelerator") == "cpu" else cfg.data.get("device", "auto")  # as the Trainer
    modules = [instantiate("data", point_config(cfg, s).data, snr=s, device=device) for s in snrs]
    first = modules[0]
    probe = instantiate("model", cfg.model, input_shape=first.input_shape, n_classes=first.n_classes)
    if not isinstance(probe.net, (HistogramDNN, ParametrisedDNN)):
        raise ConfigError(f"grid.snr with architecture {type(probe.net).__name__}: the grid trainer stacks "
                          "HistogramDNN networks (architecture=dnn or paper_dnn) or trains one ParametrisedDNN "
                          "(architecture=parametrised_dnn); train others one job per point")
    if cfg.get("logger") and cfg.logger.get("mlflow"):
        check_tracking_store(configured_tracking_uri(cfg.logger.mlflow.tracking_uri), cfg.logger.mlflow.artifact_root)
    return modules, probe


def set_up(modules: list[EnsembleDataModule]) -> None:
    """Samples and pools of the first point (generated if missing), shared by the others; every point's sets drawn."""
    first = modules[0]
    first.prepare_data()
    first.setup("fit")
    for module in modules[1:]:
        module.share_pools(first)
        module.setup("fit")


class GridTrainer:
    """The training loop of a grid: stacked networks, per-network early stopping and best weights."""

    def __init__(self, cfg: DictConfig, modules: list[EnsembleDataModule], networks: list[Network]):
        self.cfg, self.modules, self.networks = cfg, modules, networks
        first = modules[0]
        self.batch, self.steps = first.batch_size, first.steps_per_epoch
        self.rule = StoppingRule.of(cfg, first.histograms_per_epoch)
        self.lr, self.weight_decay = float(cfg.model.lr), float(cfg.model.weight_decay)
        self.optimiser_name = str(cfg.model.optimizer)  # checked when the networks' Classifiers were built
        ema = (cfg.get("callbacks") or {}).get("ema")  # weights averaged as AveragedWeights does
        self.ema_decay = averaging_decay(float(ema.get("decay", 0.999))) if ema else None
        device = first.device
        self.generators = {seed: torch.Generator(device=device).manual_seed(_derive_seed(seed, "train", 0))
                           for seed in sorted({n.seed for n in networks})}
        self._bank: list[torch.Tensor] = []
        # the training histograms on the C bins an event of the train pools is in (the others are 0 in every input)
        background = first.pools["background"].train
        signal = next(first.pools[name] for name in first.signal_sources).train  # shared by every point
        self.columns = torch.nonzero(background.bin_counts + signal.bin_counts).squeeze(1)
        self.background, self.signal = background.on_bins(self.columns), signal.on_bins(self.columns)
        self.bank_generator = torch.Generator(device=device).manual_seed(_derive_seed(int(cfg.seed), "grid bank"))
        self.addition_generator = torch.Generator(device=device).manual_seed(_derive_seed(int(cfg.seed), "grid"))
        # each point's validation inputs once, on the bins its set occupies (the others are 0 in every histogram)
        self.validation = [occupied_inputs(m.sets["val"].x) for m in modules]

    def new_optimiser(self, parameters) -> torch.optim.Optimizer:
        return make_optimiser(self.optimiser_name, parameters, lr=self.lr, weight_decay=self.weight_decay)

    def fit(self) -> None:
        active = list(self.networks)
        model = StackedDNN([n.net for n in active]).to(self.modules[0].device)
        optimiser = self.new_optimiser(model.parameters())
        averaged = copy.deepcopy(model) if self.ema_decay else model  # validated, checkpointed and tested
        ema_weight = 1 - (self.ema_decay or 0.0)
        for epoch in range(self.rule.max_epochs):
            started = time.perf_counter()
            model.train()
            losses = torch.zeros(len(active))
            for _ in range(self.steps):
                x, y, columns = self.batch_of(active)
                loss = F.binary_cross_entropy_with_logits(model(x, columns=columns), y.expand(len(active), -1),
                                                          reduction="none")
                per_network = loss.mean(dim=1)
                optimiser.zero_grad(set_to_none=True)
                per_network.sum().backward()
                optimiser.step()
                if averaged is not model:
                    update_average(averaged, model, ema_weight)
                losses += per_network.detach().cpu()
            self.validate(averaged, active, epoch, losses / self.steps)
            keep = [i for i, n in enumerate(active) if not n.stopped]
            log.info("grid epoch %d (%.1f s): %d of %d networks still training", epoch + 1,
                     time.perf_counter() - started, len(keep), len(self.networks))
            if not keep:
                return
            if len(keep) < len(active):
                optimiser = select_networks(model, optimiser, torch.tensor(keep), self.new_optimiser)
                if averaged is not model:
                    keep_networks(averaged, torch.tensor(keep))
                active = [active[i] for i in keep]

    def batch_of(self, active: list[Network]) -> tuple[ComposedInputs, torch.Tensor, torch.Tensor]:
        """Training inputs of the active networks as parts (:class:`ComposedInputs`, on the C bins that an event of
        the train pools is in: the others are 0 in every input), labels (batch,) (the first half SM + signal) and
        those C bins: one background batch of B events per histogram, its rows in an order of each seed's own, plus
        each point's S signal (or S background) events, nested across the points (:func:`draw_nested_counts`), each
        histogram normalised."""
        first = self.modules[0]
        half = self.batch // 2
        bank = self._background_batch()
        points = sorted({n.point for n in active})
        sizes = [self.modules[p].n_signal for p in points]
        additions = torch.cat([
            draw_nested_counts(self.signal, sizes, half, mode=first.mode, generator=self.addition_generator),
            draw_nested_counts(self.background, sizes, self.batch - half, mode=first.mode,
                               generator=self.addition_generator)], dim=1)
        orders = {seed: torch.randperm(self.batch, generator=self.generators[seed], device=bank.device)
                  for seed in sorted({n.seed for n in active})}
        slot = {p: i for i, p in enumerate(points)}
        groups = tuple((slot[p], part) for p, part in point_groups(active))
        rows = torch.stack([orders[n.seed] for n in active])
        scales = composed_scales(bank, rows, additions, groups, first.normalisation)
        y = torch.cat([torch.ones(half), torch.zeros(self.batch - half)]).to(bank.device)
        return ComposedInputs(bank, rows, additions, groups, scales), y, self.columns

    def _background_batch(self) -> torch.Tensor:
        """The step's background histograms (batch, C) of B events, from a block drawn for BANK_BLOCK_STEPS steps at
        once (the draw's per-call cost is half its cost in blocks of one batch)."""
        if not self._bank:
            block = draw_counts(self.background, self.modules[0].n_background, BANK_BLOCK_STEPS * self.batch,
                                mode=self.modules[0].mode, generator=self.bank_generator)
            self._bank = list(block.split(self.batch))
        return self._bank.pop()

    def validate(self, model: StackedDNN, active: list[Network], epoch: int, train_loss: torch.Tensor) -> None:
        """val/loss and val/auc of every active network on its point's validation set; early stopping and best
        weights as Lightning's EarlyStopping and ModelCheckpoint (strict improvement) do."""
        model.eval()
        for p, part in point_groups(active):
            start, end = part.start, part.stop
            inputs, columns = self.validation[p]
            logits = stacked_logits(model, inputs, slice(start, end), columns)
            labels = self.modules[p].sets["val"].y
            losses = F.binary_cross_entropy_with_logits(logits, labels.expand_as(logits), reduction="none").mean(1)
            aucs = row_aucs(torch.sigmoid(logits), labels).float()  # as a single run's BinaryAUROC (float32)
            for k, network in enumerate(active[start:end]):
                metrics = {"train/loss": float(train_loss[start + k]), "val/loss": float(losses[k]),
                           "val/auc": float(aucs[k])}
                if network.record(epoch, metrics, self.rule):
                    network.best_state = model.network_state(start + k, network.net)


def point_groups(active: list[Network]) -> list[tuple[int, slice]]:
    """(point, the slice of ``active`` holding its networks) for every point, in order: a point's networks are
    contiguous (built point by point; stopped ones leave without reordering the others)."""
    groups: list[tuple[int, slice]] = []
    start = 0
    while start < len(active):
        p = active[start].point
        end = start + sum(1 for n in active[start:] if n.point == p)
        groups.append((p, slice(start, end)))
        start = end
    return groups


def update_average(averaged: torch.nn.Module, model: torch.nn.Module, weight: float) -> None:
    """One step of the exponential moving average of ``model``'s parameters in ``averaged``, as AveragedWeights."""
    with torch.no_grad():
        for mean, param in zip(averaged.parameters(), model.parameters()):
            mean.lerp_(param, weight)


def stacked_logits(model: StackedDNN, x: torch.Tensor, networks: slice,
                   columns: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (k, H) of the networks ``networks`` (contiguous) of ``model`` on one shared input set x (H, ...),
    or (H, C) on the bins ``columns`` (:func:`occupied_inputs`)."""
    with torch.no_grad():
        return torch.cat([model(x[i: i + EVAL_CHUNK].unsqueeze(0), networks, columns=columns)
                          for i in range(0, len(x), EVAL_CHUNK)], dim=1)


def occupied_inputs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x (H, ...) flattened to the bins that are non-zero in some histogram, (H, C), and those bins (C,)."""
    flat = x.reshape(len(x), -1)
    columns = torch.nonzero((flat != 0).any(0)).squeeze(1)
    return flat[:, columns].contiguous(), columns


def test_point(module: EnsembleDataModule, networks: list[Network], cfg: DictConfig) -> None:
    """test/auc of every network of a point with its best weights, stacked (one product per chunk of the test set,
    on the bins it occupies), as a single run's BinaryAUROC; the point's optimum beside it."""
    test = module.sets["test"]
    optimum = optimum_metrics(module, cfg)
    for network in networks:
        if network.best_state:
            network.net.load_state_dict(network.best_state)
    model = StackedDNN([n.net for n in networks]).to(test.x.device).eval()
    inputs, columns = occupied_inputs(test.x)
    aucs = row_aucs(torch.sigmoid(stacked_logits(model, inputs, slice(None), columns)), test.y).float()
    for network, value in zip(networks, aucs):
        network.test = {"test/auc": float(value)} | optimum


def optimum_metrics(module: EnsembleDataModule, cfg: DictConfig) -> dict[str, float]:
    """The point's optimum on its test set, with its bootstrap spread (``callbacks.results.n_bootstrap``) and
    pseudo-count, as a single run's results reporter logs them."""
    n_bootstrap = int(((cfg.get("callbacks") or {}).get("results") or {}).get("n_bootstrap", 20))
    optimum = module.optimal_auc(n_bootstrap=n_bootstrap)
    return {"test/auc_optimal": optimum.auc, "test/auc_optimal_std": optimum.std or 0.0,
            "test/auc_optimal_pseudo_count": module.optimum_pseudo_count()}


def log_grid(cfg: DictConfig, snrs: list[float], modules: list[EnsembleDataModule], networks: list[Network],
             trained_s: float) -> float:
    """Every network as a run of its point (children of a point run when repeats > 1), all under one grid run
    with the points' table; prints the table. Returns the mean best ``optimized_metric``."""
    rows = []
    grid_run = None
    objective = str(cfg.get("optimized_metric", "val/auc"))
    output = Path(cfg.paths.output_dir)
    for p, (snr, module) in enumerate(zip(snrs, modules)):
        point_cfg = point_config(cfg, snr)
        members = [n for n in networks if n.point == p]
        derived = derived_params(point_cfg, module)
        if grid_run is None and cfg.get("logger") and cfg.logger.get("mlflow"):
            grid_run = _grid_run(cfg, derived, snrs, len(networks))
        runs = RunGroup(point_cfg, derived, tags={"dmlhc.grid_run": grid_run.run_id} if grid_run else None,
                        parent_run_id=grid_run.run_id if grid_run else None)
        for (seed, logger), network in zip(runs, members):
            assert seed == network.seed
            metrics = _log_network(logger, network, module, output)
            runs.record(metrics)
        runs.finish(objective, report=False)
        mean, std = trimmed_statistic([n.test["test/auc"] for n in members])
        row: dict[str, Any] = {"signal": derived["signal"], "snr": snr, "test/auc": mean, "test/auc_std": std,
               "repeats": len(members), "test/auc_optimal": members[0].test["test/auc_optimal"],
               "test/auc_optimal_std": members[0].test["test/auc_optimal_std"],
               "epochs": sum(len(n.history) for n in members) / len(members), "run_id": runs.top_run_id}
        if runs.parent is not None:  # the point's run: its optimum beside the repeat statistic, as the table has it
            for key in ("test/auc_optimal", "test/auc_optimal_std", "epochs"):
                runs.parent.experiment.log_metric(runs.parent.run_id, key, float(row[key]))
        rows.append(row)
    rate = 60 * len(networks) / trained_s
    print(grid_table(rows), flush=True)
    print(f"grid: {len(networks)} networks trained in {trained_s:.0f} s ({rate:.1f} networks per minute)", flush=True)
    largest_gap = max(r["test/auc_optimal"] - r["test/auc"] for r in rows)
    write_result(output, {  # the job's row of a multirun's table: the grid run, in place of one network's AUC
        "task": "binary", "signal": rows[0]["signal"], "snr": f"{len(snrs)} points",
        "architecture": architecture_name(cfg), "seed": seed_range(cfg),
        "status": f"grid: {len(networks)} networks, largest gap {largest_gap:.4f}",
        "run_id": grid_run.run_id if grid_run is not None else None, "output_dir": str(output)})
    if grid_run is not None:
        client = grid_run.experiment
        table = output / "grid.csv"
        write_rows(rows, table)
        client.log_artifact(grid_run.run_id, str(table))
        client.log_metric(grid_run.run_id, "grid/train_seconds", trained_s)
        client.log_metric(grid_run.run_id, "grid/networks_per_minute", rate)
        client.log_metric(grid_run.run_id, "grid/max_gap", largest_gap)
        grid_run.finalize("success")
    values = [n.best.get(objective.removeprefix("best_"), math.nan) for n in networks]
    return float(sum(values) / len(values))


def seed_range(cfg: DictConfig) -> str:
    """The grid's seeds as ``<first>-<last>``."""
    return f"{cfg.seed}-{int(cfg.seed) + int(cfg.repeats) - 1}"


def _grid_run(cfg: DictConfig, derived: dict, snrs: list[float], n_networks: int):
    """The grid's parent run: ``grid_<signal>_<architecture>_seeds<a>-<b>``, its params the grid's settings."""
    logger = instantiate("logger.mlflow", cfg.logger.mlflow, run_name=(
        f"grid_{derived['signal']}_{architecture_name(cfg)}_seeds{seed_range(cfg)}"),
        tags={"dmlhc.grid": "true", "dmlhc.task": str(derived["task"])})
    logger.log_hyperparams({"signal": derived["signal"], "grid.snr": ",".join(f"{s:g}" for s in snrs),
                            "repeats": int(cfg.repeats), "seed": int(cfg.seed), "networks": n_networks,
                            "n_background": derived["n_background"], "architecture": derived["architecture"]})
    return logger


def _log_network(logger, network: Network, module: EnsembleDataModule, output: Path) -> dict[str, float]:
    """One network's history, test metrics, best_* and checkpoint into its run, as a single run logs them."""
    from mlflow.entities import Metric, Param

    client, run_id = logger.experiment, logger.run_id
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in pool_params(module).items()])
    steps = module.steps_per_epoch
    now = int(time.time() * 1000)
    entries = [Metric(key, value, now, (int(row["epoch"]) + 1) * steps) for row in network.history
               for key, value in row.items()]
    last_step = len(network.history) * steps
    metrics = dict(network.test) | {"epochs": len(network.history), "best_epoch": network.best_epoch} \
        | {f"best_{k}": v for k, v in network.best.items()}
    entries += [Metric(key, float(value), now, last_step) for key, value in metrics.items()]
    for start in range(0, len(entries), 1000):
        client.log_batch(run_id, metrics=entries[start: start + 1000])
    save_checkpoint(logger, network.classifier, output / "checkpoints" / "grid" / f"{run_id}.ckpt", network.best_epoch,
                    steps)
    logger.finalize("success")
    return {k: float(v) for k, v in metrics.items()}


def grid_table(rows: list[dict]) -> str:
    """The points as a text table: S/sqrt(B), network (mean +- std over repeats), optimum, gap."""
    lines = [f"{'signal':18s} {'snr':>7s} {'network':>16s} {'optimum':>8s} {'gap':>7s} {'epochs':>6s}"]
    for r in rows:
        lines.append(f"{r['signal']:18s} {r['snr']:7.3f} {r['test/auc']:8.4f} +- {r['test/auc_std']:.4f} "
                     f"{r['test/auc_optimal']:8.4f} {r['test/auc_optimal'] - r['test/auc']:7.4f} {r['epochs']:6.1f}")
    return "\n".join(lines)


def write_rows(rows: list[dict], path: Path) -> Path:
    """The table as CSV (atomically: a partial file never replaces a good one)."""
    with atomic_target(path) as partial, open(partial, "w", newline="") as out:
        writer = csv.DictWriter(out, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path

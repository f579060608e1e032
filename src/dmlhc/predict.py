"""``dmlhc predict``: does an observed dataset contain the signal a trained run looks for?

The events of one or more Delphes files (a user's real Delphes output, or ``dmlhc generate --out``) pass the run's
selection cuts and fill ONE histogram on the run's binning, normalised as training normalised its histograms
(``data.normalisation``), which the run's network scores. ``--run`` is an MLflow run id (its ``config.yaml`` and
``checkpoints/best.ckpt`` artifacts, fetched as ``eval.py run_id=`` fetches them) or a checkpoint file (with a
``config.yaml`` beside it or one folder up, as a run's downloaded artifacts lie, else the data settings the
checkpoint holds in its hyper-parameters).

Binary runs (tasks ``binary`` and ``multimodel``): the score is the network's probability of SM + signal, and its
p-value comes from SM-only pseudo-datasets (:func:`dmlhc.significance.pseudo_experiments`): independent Poisson
bin counts drawn from the run's held-out SM test pool, with an expected total equal to the observed number N of
selected events, scored by the same network after the same normalisation; p = (k + 1) / (n + 1), k of the n
pseudo-datasets scoring at least as high (a score above all of them gives only the bound p < 1 / (n + 1)), and
Z = Phi^-1(1 - p). The SM-only expectation is the observed count because predict knows neither the luminosity nor
the SM cross section: the test asks whether the (pT, eta) *shape* of the data is SM-like; an excess of events
alone is no evidence here (``dmlhc reach`` gives expected counts). The network, trained on histograms of a fixed
B + S events, is such a shape test too.

Beside the network, the optimum: the run's own likelihood ratio (:mod:`dmlhc.optimal`, the statistic of its
``test/auc_optimal``) of SM-only against SM + signal at the trained fraction S / (B + S), with bin probabilities
from the run's train pools and its pseudo-count, scored on the same pseudo-datasets. It is the likelihood ratio of
shapes at a fixed total: the Poisson form :class:`dmlhc.significance.PoissonLikelihoodRatio`, sum h_i log(1 +
s_i / b_i), also grows with the total number of events, which carries no information once the SM-only
expectation is the observed count, so it would only add noise to the p-values. Both come with the expected
(median) Z of SM + signal pseudo-datasets, S signal events of the run's held-out signal pool (an equal mixture of
the benchmarks' pools for ``multimodel``) added to SM-only ones (N + S expected events, as
:func:`~dmlhc.significance.pseudo_experiments` draws them): how significant the trained signal would typically be
on top of the SM that the test assumes.

Multiclass runs: the classes (SM only and SM + each benchmark) ranked by the network's probability.

Refused, each in one line with the fix: fewer than :data:`MIN_SELECTED_EVENTS` selected events; a count outside
:data:`SIZE_RANGE` times the B + S events of the trained histograms (the network has seen only those: its score of
a much smaller or larger histogram, whose relative fluctuations differ, means nothing); runs of tasks that classify
no SM-only hypothesis against a dataset (``event``: single events; ``model_vs_model``: SM + A against SM + B).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from dmlhc.config import instantiate, prepare_process
from dmlhc.data.datamodule import EnsembleDataModule
from dmlhc.data.ensembles import n_signal_events
from dmlhc.errors import ConfigError, InputDataError, UserError
from dmlhc.eval import fetch_run, load_model
from dmlhc.events.delphes import read_delphes
from dmlhc.models.classifier import Classifier
from dmlhc.optimal import bin_probabilities, plug_in_likelihood_ratio
from dmlhc.reach import select
from dmlhc.significance import PseudoExperiments, Scorer, Source, pseudo_experiments
from dmlhc.tracking.store import configured_tracking_uri

MIN_SELECTED_EVENTS = 100  # as the pool rule: fewer events do not represent a (pT, eta) distribution
SIZE_RANGE = (0.5, 2.0)  # selected events / (B + S) of the trained histograms that a prediction accepts
DEFAULT_PSEUDO_EXPERIMENTS = 2000
BINARY_TASKS = ("binary", "multimodel")
TASKS = (*BINARY_TASKS, "multiclass")


@dataclass(frozen=True)
class Observed:
    """The selected events of the observed files as one histogram: ``counts`` (n_bins,) on the run's binning."""

    files: tuple[str, ...]
    n_read: int
    counts: torch.Tensor

    @property
    def n_selected(self) -> int:
        return int(self.counts.sum())


def observe(files: Sequence[str | Path], datamodule: EnsembleDataModule) -> Observed:
    """Read ``files`` (Delphes schema) and histogram every event that passes the run's cuts on its binning."""
    parts = [select(read_delphes(path), Path(path).stem, datamodule.cuts, datamodule.binning) for path in files]
    return Observed(tuple(str(path) for path in files), sum(p.n_events for p in parts),
                    torch.stack([p.bin_counts for p in parts]).sum(dim=0))


def trained_config(run: str, folder: Path, tracking_uri: str | None = None) -> tuple[DictConfig, str, dict]:
    """(the run's config, with ``data`` and ``model``; its checkpoint file; what identifies it: ``run_id`` and
    ``run_name``, or ``checkpoint``). ``run``: a checkpoint file, else an MLflow run id of the store at
    ``tracking_uri`` (default ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``), fetched into
    ``folder``."""
    path = Path(run)
    if path.is_file():
        return checkpoint_config(path), str(path), {"checkpoint": str(path)}
    if path.suffix == ".ckpt" or path.exists() or "/" in run:
        raise ConfigError(f"--run {run}: {'a folder, not a' if path.is_dir() else 'no such'} checkpoint file; give "
                          "a checkpoint (.ckpt) of train.py, or the MLflow run id of a training")
    cfg, checkpoint, source = fetch_run(configured_tracking_uri(tracking_uri), run, folder, option="--run ",
                                        store_option="--tracking-uri")
    return cfg, checkpoint, {"run_id": source.info.run_id, "run_name": source.info.run_name}


def checkpoint_config(checkpoint: Path) -> DictConfig:
    """The config of a checkpoint: a ``config.yaml`` beside it or one folder up (a run's artifacts), else the
    DataModule's hyper-parameters it holds (with the :class:`Classifier`)."""
    for candidate in (checkpoint.parent / "config.yaml", checkpoint.parent.parent / "config.yaml"):
        if candidate.is_file():
            cfg = OmegaConf.load(candidate)
            if isinstance(cfg, DictConfig) and "data" in cfg and "model" in cfg:
                return cfg
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise not_a_checkpoint(checkpoint, err) from None
    data = dict(saved.get("datamodule_hyper_parameters") or {}) if isinstance(saved, dict) else {}
    samples = dict(data.pop("samples", None) or {})
    background = samples.pop("background", None)
    if background is None or not samples:
        raise ConfigError(f"--run {checkpoint}: the checkpoint holds no data settings (sample specs) and has no "
                          "config.yaml beside it; put the run's config.yaml beside it, or give the MLflow run id")
    data |= {"_target_": _path(EnsembleDataModule), "background": background, "signal": next(iter(samples.values()))}
    return OmegaConf.create({"data": data, "model": {"_target_": _path(Classifier)}})


def not_a_checkpoint(checkpoint: str | Path, err: Exception) -> ConfigError:
    """The error for a ``--run`` file that is no checkpoint of train.py's classifier."""
    return ConfigError(f"--run {checkpoint}: not a checkpoint of train.py's classifier ({type(err).__name__}: "
                       f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}); give the best.ckpt of a "
                       "training, or its MLflow run id")


def load_network(cfg: DictConfig, checkpoint: str, datamodule: EnsembleDataModule) -> Any:
    """The run's network from ``checkpoint`` (eval.py's loading, checked against the run's data), in eval mode."""
    try:
        return load_model(cfg, checkpoint, datamodule).eval()
    except UserError:
        raise
    except Exception as err:  # torch and Lightning raise many types for a file that is not such a checkpoint
        raise not_a_checkpoint(checkpoint, err) from None


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def datamodule_of(cfg: DictConfig, where: str) -> EnsembleDataModule:
    """The run's DataModule, on the CPU and the current sample cache (``$DMLHC_CACHE``), once its task is one predict
    can handle; ``where`` names the run in messages. Nothing is read or generated yet."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)  # a config node
    task = data.get("task", "binary")
    if task not in TASKS:
        what = {"event": "classifies single events, not a dataset's histogram",
                "model_vs_model": "tells SM + one model from SM + another, with no SM-only hypothesis to test"}
        raise ConfigError(f"--run {where}: a run of task {task!r} {what.get(task, 'is not a histogram task')}; "
                          f"predict takes runs of {', '.join(TASKS)} (train one, e.g. model=binary)")
    # predict scores no test set: the fewest histograms allowed (one per class component)
    data |= {"cache_dir": None, "device": "cpu", "n_test": 1 + len(data.get("benchmarks") or ["signal"])}
    return instantiate("data", OmegaConf.create(data))


def background_for(n_events: int, snr: float) -> int:
    """The B whose histograms of B + S = B + snr sqrt(B) events hold about ``n_events``."""
    return max(1, round(((math.sqrt(snr**2 + 4 * n_events) - snr) / 2) ** 2))


def check_size(observed: Observed, datamodule: EnsembleDataModule, where: str) -> None:
    """Refuse (:class:`InputDataError`) fewer than :data:`MIN_SELECTED_EVENTS` selected events, or a count far from
    the B + S events of the trained histograms; the message says what would fit."""
    n, trained = observed.n_selected, datamodule.n_background + datamodule.n_signal
    files = ", ".join(observed.files)
    per_read = observed.n_read / max(n, 1)  # events read per selected event
    low, high = (math.ceil(f * trained) for f in SIZE_RANGE)
    fits = (f"select a file with ~{trained} events (between {low} and {high} after the cuts, about "
            f"{round(trained * per_read)} before them)")
    cuts = datamodule.cuts
    selected = (f"{n} of its {observed.n_read} events pass the run's cuts ({cuts.pt_min:g} <= pT <= "
                f"{cuts.pt_max:g} GeV, |eta| <= {cuts.abs_eta_max:g})")
    if n < MIN_SELECTED_EVENTS:
        raise InputDataError(f"{files}: only {selected}; a histogram of fewer than {MIN_SELECTED_EVENTS} events "
                             f"does not represent a (pT, eta) distribution; {fits}")
    if not low <= n <= high:
        b = background_for(n, datamodule.snr)
        s = n_signal_events(b, datamodule.snr)
        raise InputDataError(
            f"{files}: {selected}, but run {where} was trained on histograms of B + S = {datamodule.n_background} + "
            f"{datamodule.n_signal} = {trained} events (S/sqrt(B) = {datamodule.snr:g}) and scores only datasets of "
            f"{low} to {high}; train at background.n_background={b} snr={datamodule.snr:g} (B + S = {b} + {s} = "
            f"{b + s}) or {fits}")


def class_names(datamodule: EnsembleDataModule) -> list[str]:
    """``SM only``, ``SM + <benchmark>`` (``SM + any of a, b`` for a class of several) per class."""
    return ["SM only" if parts == (None,) else f"SM + {'any of ' if len(parts) > 1 else ''}"
            f"{', '.join(str(p) for p in parts)}" for parts in datamodule.task.classes]


def network_scorer(model: Any, datamodule: EnsembleDataModule) -> Scorer:
    """Counts (H, n_bins) -> the network's probabilities (H,) of SM + signal, or (H, n_classes), from the inputs
    training gave it."""
    def score(counts: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.scores(model(datamodule.network_inputs(counts.float()))).double()

    return score


def optimum_scorer(datamodule: EnsembleDataModule) -> Scorer:
    """The run's likelihood-ratio statistic (the one of ``test/auc_optimal``): bin probabilities from its train pools
    with its pseudo-count, SM + signal at the trained B and S."""
    pools = datamodule.pools
    ratio = plug_in_likelihood_ratio(datamodule.task, pools["background"]["train"].bin_counts,
                                     {name: pools[name]["train"].bin_counts for name in datamodule.signal_sources},
                                     datamodule.n_background, datamodule.n_signal, datamodule.optimum_pseudo_count())
    return ratio.scores


def signal_label(datamodule: EnsembleDataModule) -> str:
    """The signal of the expected-Z pseudo-datasets, in words (:func:`signal_source`)."""
    names = list(datamodule.signal_sources)
    return names[0] if len(names) == 1 else f"an equal mixture of {', '.join(names)}"


def signal_source(datamodule: EnsembleDataModule) -> Source:
    """What the expected-Z pseudo-datasets add: the signal's held-out pool, or for several benchmarks (multimodel)
    the equal mixture of their pools' bin probabilities."""
    pools = [datamodule.pools[name]["test"] for name in datamodule.signal_sources]
    if len(pools) == 1:
        return pools[0]
    return torch.stack([bin_probabilities(pool.bin_counts, 0.0) for pool in pools]).mean(dim=0)


def verdict(score: Scorer, observed: Observed, datamodule: EnsembleDataModule, n_experiments: int,
            seed: int) -> dict[str, Any]:
    """Score, p-value and Z of the observed histogram under ``score`` against SM-only pseudo-datasets of Poisson(N)
    events (N: the observed selected events), and the median Z of SM + signal ones; the same ``seed`` draws the
    same pseudo-datasets for every scorer."""
    experiments: PseudoExperiments = pseudo_experiments(
        score, datamodule.pools["background"]["test"], signal_source(datamodule), observed.n_selected,
        datamodule.n_signal, n_experiments, generator=torch.Generator().manual_seed(seed))
    value = score(observed.counts[None].double())
    return {"score": float(value[0]), "p_value": float(experiments.p_values(value)[0]),
            "z": float(experiments.z_values(value)[0]), "beyond_all_sm_only": bool(experiments.beyond_tail(value)[0]),
            "expected_median_z": experiments.median_z, "expected_median_z_std": experiments.median_z_std,
            "expected_beyond_all_sm_only": experiments.median_beyond_tail}


def load_run(run: str, tracking_uri: str | None = None) -> tuple[EnsembleDataModule, Any, dict]:
    """(the run's DataModule, as :func:`datamodule_of` makes it; its network in eval mode; what identifies it:
    ``run_id`` and ``run_name``, or ``checkpoint``) of ``run``, a checkpoint file or an MLflow run id."""
    with tempfile.TemporaryDirectory() as folder:
        cfg, checkpoint, source = trained_config(run, Path(folder), tracking_uri)
        prepare_process(cfg)
        datamodule = datamodule_of(cfg, source.get("run_id") or str(checkpoint))
        return datamodule, load_network(cfg, checkpoint, datamodule), source


def binary_scorers(model: Any, datamodule: EnsembleDataModule) -> dict[str, Scorer]:
    """The network's and the optimum's scorers of a binary run, once its samples are read (generated again, same
    seeds and events, if they are not in the cache) and its held-out pools made."""
    datamodule.prepare_data()
    datamodule.setup("test")
    return {"network": network_scorer(model, datamodule), "optimum": optimum_scorer(datamodule)}


def expected_significance(model: Any, datamodule: EnsembleDataModule, n_experiments: int = DEFAULT_PSEUDO_EXPERIMENTS,
                          seed: int = 1) -> dict[str, PseudoExperiments]:
    """The expected discovery significance of a binary run at the point it was trained for, for its network and its
    optimum: ``n_experiments`` SM-only pseudo-datasets of Poisson counts with B expected events (the run's held-out
    SM pool) and as many with S signal events added (:func:`signal_source`), scored alike (the same ``seed`` draws
    the same pseudo-datasets for both). Their ``median_z`` is the median Z of SM + signal data."""
    if datamodule.task.name not in BINARY_TASKS:
        raise ConfigError(f"a run of task {datamodule.task.name!r} has no SM-only score to test; expected "
                          f"significances take runs of {', '.join(BINARY_TASKS)}")
    return {name: pseudo_experiments(score, datamodule.pools["background"]["test"], signal_source(datamodule),
                                     datamodule.n_background, datamodule.n_signal, n_experiments,
                                     generator=torch.Generator().manual_seed(seed))
            for name, score in binary_scorers(model, datamodule).items()}


def predict(files: Sequence[str | Path], run: str, *, n_experiments: int = DEFAULT_PSEUDO_EXPERIMENTS,
            seed: int = 1, tracking_uri: str | None = None) -> dict[str, Any]:
    """The report of ``dmlhc predict`` (:func:`format_report` prints it; plain data, JSON-ready)."""
    if n_experiments < 1:
        raise ConfigError(f"--pseudo-experiments {n_experiments}: give at least 1 (default "
                          f"{DEFAULT_PSEUDO_EXPERIMENTS}; p-values resolve 1 / (n + 1))")
    datamodule, model, source = load_run(run, tracking_uri)
    observed = observe(files, datamodule)
    check_size(observed, datamodule, source.get("run_id") or str(source.get("checkpoint")))
    report: dict[str, Any] = {
        "files": list(observed.files), "events_read": observed.n_read, "events_selected": observed.n_selected,
        **source, "task": datamodule.task.name, "classes": class_names(datamodule),
        "n_background": datamodule.n_background, "n_signal": datamodule.n_signal, "snr": datamodule.snr,
        "cuts": vars(datamodule.cuts), "binning": datamodule.binning.describe(),
        "normalisation": datamodule.normalisation, "signal": signal_label(datamodule)}
    if datamodule.task.name not in BINARY_TASKS:
        probabilities = network_scorer(model, datamodule)(observed.counts[None])[0].tolist()
        ranked = sorted(zip(report["classes"], probabilities), key=lambda item: -item[1])
        return report | {"ranking": [{"class": name, "probability": p} for name, p in ranked]}
    scorers = binary_scorers(model, datamodule)
    return report | {"pseudo_experiments": n_experiments, "seed": seed,
                     "sm_only_pool_events": len(datamodule.pools["background"]["test"]),
                     **{name: verdict(score, observed, datamodule, n_experiments, seed)
                        for name, score in scorers.items()}}


def _p_and_z(result: dict[str, Any], n_experiments: int) -> str:
    if result["beyond_all_sm_only"]:
        return (f"p < {result['p_value']:.2g}  Z > {result['z']:.2f}  (above all {n_experiments} SM-only scores; "
                "more --pseudo-experiments for a value)")
    return f"p = {result['p_value']:.4g}  Z = {result['z']:.2f}"


def _expected(result: dict[str, Any]) -> str:
    if result["expected_beyond_all_sm_only"]:
        return f"> {result['expected_median_z']:.2f}"
    return f"{result['expected_median_z']:.2f} +- {result['expected_median_z_std']:.2f}"


def format_report(report: dict[str, Any]) -> str:
    """The report as a short human-readable block."""
    cuts = report["cuts"]
    run = (f"{report['run_id']} ({report['run_name']})" if report.get("run_id") else report["checkpoint"])
    classes = report["classes"]
    lines = [
        f"dmlhc predict: {', '.join(report['files'])}",
        f"  events          {report['events_read']} read, {report['events_selected']} selected ({cuts['pt_min']:g} "
        f"<= pT <= {cuts['pt_max']:g} GeV, |eta| <= {cuts['abs_eta_max']:g}; {report['binning']})",
        f"  run             {run}: {report['task']}, {' vs '.join(classes)}",
        f"  trained for     B = {report['n_background']} SM + S = {report['n_signal']} signal events per histogram "
        f"(S/sqrt(B) = {report['snr']:g}), {report['normalisation']}-normalised",
    ]
    if "ranking" in report:
        width = max(len(c) for c in classes)
        lines += [f"  {'network' if k == 0 else '':<16}{k + 1}. {item['class']:<{width}}  {item['probability']:.4f}"
                  for k, item in enumerate(report["ranking"])]
        return "\n".join(lines)
    n = report["pseudo_experiments"]
    network, optimum = report["network"], report["optimum"]
    lines += [
        f"  network         P(SM + signal) = {network['score']:.4f}  {_p_and_z(network, n)}",
        f"  optimum         log LR = {optimum['score']:.4g}  {_p_and_z(optimum, n)}",
        f"  SM-only         {n} pseudo-datasets of Poisson counts, {report['events_selected']} events expected (the "
        f"observed number: a test of the (pT, eta) shape, not of the count), from the run's held-out SM pool "
        f"({report['sm_only_pool_events']} events), scored alike (seed {report['seed']})",
        f"  expected        median Z were S = {report['n_signal']} events of {report['signal']} added "
        f"to them: network {_expected(network)}, optimum {_expected(optimum)}",
    ]
    return "\n".join(lines)


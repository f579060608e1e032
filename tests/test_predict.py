"""``dmlhc predict``: a smoke training (real ``train.py``, real generator), observed files written by ``dmlhc generate
--out`` and by the Delphes writer, the run given by its MLflow id or as a checkpoint file; refusals in one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import lightning
import mlflow
import pytest
import torch
from conftest import synthetic_sample
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from user_errors import assert_user_error, run_entry_point

from dmlhc.cli import main
from dmlhc.config import instantiate
from dmlhc.data.ensembles import normalise
from dmlhc.data.pools import Binning, Cuts
from dmlhc.events.delphes import concatenate, read_delphes, write_delphes
from dmlhc.predict import background_for

ROOT = Path(__file__).resolve().parents[1]
B, S = 2000, 134  # debug=smoke at S/sqrt(B) = 3
# Weight averaging (decay 0.999) over the 60 steps of a smoke run leaves a network close to its initial weights.
TRAINING = ["signal=spin1_onshell", "snr=3", "debug=smoke", "++callbacks.ema=null"]
GENERATED = {"sm_only": ("sm", B + S, 7), "sm_part": ("sm", B, 8), "signal_part": ("spin1_onshell", S, 2),
             "few": ("sm", 60, 9)}  # file: (benchmark, events, seed)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, session_cache) -> tuple[Path, str]:
    """A smoke training in a fresh directory, and observed files beside it: (directory, run id)."""
    cwd = tmp_path_factory.mktemp("predict")
    run = run_entry_point(["train.py", *TRAINING], cwd, env={"DMLHC_CACHE": str(session_cache)})
    assert run.returncode == 0, run.stderr[-3000:]
    (result,) = (cwd / "outputs" / "runs").glob("*/*/result.json")
    for name, (benchmark, events, seed) in GENERATED.items():
        assert main(["generate", "--benchmark", benchmark, "--events", str(events), "--seed", str(seed), "--out",
                     str(cwd / f"{name}.root"), "--cache", str(session_cache), "--quiet"]) == 0
    mixed = concatenate([read_delphes(cwd / "sm_part.root"), read_delphes(cwd / "signal_part.root")])
    write_delphes(cwd / "sm_plus_signal.root", mixed)
    return cwd, json.loads(result.read_text())["run_id"]


def _predict(cwd: Path, run: str, *events: str, extra: tuple[str, ...] = ()) -> dict:
    """``dmlhc predict`` in-process; its --json report."""
    report = cwd / "report.json"
    assert main(["predict", "--events", *(str(cwd / e) for e in events), "--run", run, "--json", str(report),
                 "--tracking-uri", f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}", *extra]) == 0
    return json.loads(report.read_text())


def _refused(argv: list[str], capsys) -> subprocess.CompletedProcess:
    """``dmlhc ...`` in-process that must exit with a user error, as :func:`run_entry_point` gives it."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, exit_info.value.code, captured.out, captured.err)


@pytest.mark.pythia
def test_a_file_with_the_signal_scores_higher_than_an_sm_only_one(trained, capsys):
    cwd, run_id = trained
    sm_only = _predict(cwd, run_id, "sm_only.root")
    out = capsys.readouterr().out
    with_signal = _predict(cwd, run_id, "sm_plus_signal.root")
    assert sm_only["events_selected"] == with_signal["events_selected"] == B + S
    assert sm_only["run_id"] == run_id and (sm_only["n_background"], sm_only["n_signal"]) == (B, S)
    # SM-only events: nothing to see, by the network or the optimum (measured: p = 0.21 and 0.10).
    assert sm_only["network"]["p_value"] > 0.05 and sm_only["optimum"]["p_value"] > 0.05
    # B SM + S signal events: a higher probability of SM + signal and smaller p-values (measured: the network's
    # p = 0.023, the optimum's above all 2000 SM-only scores, p < 1/2001).
    assert with_signal["network"]["score"] > sm_only["network"]["score"]
    for scorer in ("network", "optimum"):
        assert with_signal[scorer]["p_value"] < sm_only[scorer]["p_value"]
    assert with_signal["optimum"]["p_value"] < 0.01
    if with_signal["optimum"]["beyond_all_sm_only"]:  # the bound, as the output says it
        assert with_signal["optimum"]["p_value"] == pytest.approx(1 / 2001)
    # Expected significance of the trained signal: the optimum's above the network's (smoke AUC 0.88 against 0.99).
    assert with_signal["optimum"]["expected_median_z"] > with_signal["network"]["expected_median_z"] > 0.5
    lines = out.splitlines()
    assert lines[0] == f"dmlhc predict: {cwd / 'sm_only.root'}"
    assert f"{B + S} read, {B + S} selected" in lines[1] and run_id in lines[2]
    assert f"B = {B} SM + S = {S} signal events per histogram" in lines[3]
    assert f"P(SM + signal) = {sm_only['network']['score']:.4f}  p = {sm_only['network']['p_value']:.4g}" in lines[4]
    assert "2000 pseudo-datasets of Poisson counts" in out and "not of the count" in out


@pytest.mark.pythia
def test_several_files_make_one_histogram_and_a_checkpoint_predicts_as_its_run(trained, tmp_path):
    cwd, run_id = trained
    few = ("--pseudo-experiments", "300")
    by_id = _predict(cwd, run_id, "sm_plus_signal.root", extra=few)
    by_parts = _predict(cwd, run_id, "sm_part.root", "signal_part.root", extra=few)
    client = mlflow.MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    alone = Path(client.download_artifacts(run_id, "checkpoints/best.ckpt", str(tmp_path / "alone")))
    client.download_artifacts(run_id, "config.yaml", str(tmp_path / "artifacts"))  # a run's artifacts, as laid out
    with_config = Path(client.download_artifacts(run_id, "checkpoints/best.ckpt", str(tmp_path / "artifacts")))
    by_hyperparameters = _predict(cwd, str(alone), "sm_plus_signal.root", extra=few)
    by_config = _predict(cwd, str(with_config), "sm_plus_signal.root", extra=few)
    assert by_parts["files"] == [str(cwd / "sm_part.root"), str(cwd / "signal_part.root")]
    assert by_hyperparameters["checkpoint"] == str(alone) and "run_id" not in by_hyperparameters
    for report in (by_parts, by_hyperparameters, by_config):
        assert report["events_selected"] == B + S
        assert report["network"] == by_id["network"] and report["optimum"] == by_id["optimum"]


@pytest.mark.pythia
def test_a_file_far_from_the_trained_size_is_refused_naming_what_would_fit(trained, capsys):
    cwd, run_id = trained
    store = ("--tracking-uri", f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    small = _refused(["predict", "--events", str(cwd / "signal_part.root"), "--run", run_id, *store], capsys)
    assert_user_error(small, 3, "input data error", f"{S} of its {S} events pass the run's cuts",
                      f"B + S = {B} + {S} = {B + S} events", f"train at background.n_background="
                      f"{background_for(S, 3)} snr=3", f"select a file with ~{B + S} events")
    few = _refused(["predict", "--events", str(cwd / "few.root"), "--run", run_id, *store], capsys)
    assert_user_error(few, 3, "only 60 of its 60 events pass the run's cuts", "fewer than 100 events",
                      f"select a file with ~{B + S} events")


def test_an_unknown_run_id_is_one_line_and_creates_no_store(tmp_path):
    (tmp_path / "x.root").touch()
    result = run_entry_point(["dmlhc", "predict", "--events", "x.root", "--run", "0123456789abcdef"], tmp_path,
                             env={"MLFLOW_TRACKING_URI": ""})
    assert_user_error(result, 2, "configuration error", "--run 0123456789abcdef: no such run in "
                      "sqlite:///mlruns/mlflow.db, which does not exist", "--tracking-uri")
    assert not (tmp_path / "mlruns").exists()


def _config(tmp_path: Path, overrides: list[str]) -> Path:
    """A run's ``config.yaml`` (as train.py stores it) in ``tmp_path``; returns the path of a checkpoint beside it."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["debug=smoke", "snr=3", "paths.output_dir=job", *overrides])
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return tmp_path / "best.ckpt"


@pytest.mark.parametrize("overrides,message", [
    (["model=event", "architecture=event_dnn"], "a run of task 'event' classifies single events"),
    (["model=model_vs_model"], "a run of task 'model_vs_model' tells SM + one model from SM + another"),
])
def test_runs_of_tasks_without_an_sm_only_histogram_class_are_refused(overrides, message, tmp_path, capsys):
    checkpoint = _config(tmp_path, overrides)
    checkpoint.write_bytes(b"refused before it is read")
    write_delphes(tmp_path / "x.root", synthetic_sample(B + S))
    result = _refused(["predict", "--events", str(tmp_path / "x.root"), "--run", str(checkpoint)], capsys)
    assert_user_error(result, 2, "configuration error", message, "predict takes runs of binary, multimodel, "
                      "multiclass")


def test_a_multiclass_run_ranks_the_classes(tmp_path):
    checkpoint = _config(tmp_path, ["model=multiclass", "data.benchmarks=[spin1_onshell,spin2_onshell]"])
    cfg = OmegaConf.load(tmp_path / "config.yaml")
    model = instantiate("model", cfg.model, input_shape=[30, 30], n_classes=3).eval()  # untrained: any weights do
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": lightning.__version__}, checkpoint)
    events = synthetic_sample(B + S + 100, seed=3)
    write_delphes(tmp_path / "x.root", events)
    report = _predict(tmp_path, str(checkpoint), "x.root")
    ranking = report["ranking"]
    assert [r["probability"] for r in ranking] == sorted((r["probability"] for r in ranking), reverse=True)
    names = ["SM only", "SM + spin1_onshell", "SM + spin2_onshell"]
    assert sorted(r["class"] for r in ranking) == sorted(names) and report["classes"] == names
    # The network's softmax of the max-normalised histogram of the selected events.
    jet, cuts, binning = events.leading_jet(), Cuts(), Binning()
    bins = binning.bin_index(jet["pt"], jet["eta"])[cuts.mask(jet["pt"], jet["eta"])]
    counts = torch.bincount(torch.as_tensor(bins), minlength=binning.n_bins).float()[None]
    with torch.no_grad():
        expected = torch.softmax(model(normalise(counts).view(1, 30, 30)), dim=-1)[0].tolist()
    assert {r["class"]: r["probability"] for r in ranking} == pytest.approx(dict(zip(names, expected)), abs=1e-6)
    assert report["events_selected"] == len(bins) and "pseudo_experiments" not in report


def test_background_for_inverts_b_plus_s():
    assert background_for(B + S, 3) == B and background_for(50_224, 1) == 50_000


def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "best.ckpt").write_text("not a checkpoint")
    write_delphes(tmp_path / "x.root", synthetic_sample(B + S))
    result = _refused(["predict", "--events", str(tmp_path / "x.root"), "--run", str(tmp_path / "best.ckpt")], capsys)
    assert_user_error(result, 2, f"--run {tmp_path / 'best.ckpt'}: not a checkpoint of train.py's classifier",
                      "give the best.ckpt of a training, or its MLflow run id")

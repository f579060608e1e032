"""The grid trainer (``grid.snr``: dmlhc.grid, dmlhc.models.stacked).

Stacked networks compute what each network computes alone; one AdamW over the stack is one AdamW per network;
dropping stopped networks keeps the others' state; the redrawn exact subsets are distinct and uniform. End to
end, with real train.py / eval.py processes, the real generator and a real SQLite store: a grid job logs every
network as a single run logs it, a network trained in the grid reaches what the same network (same seed)
reaches alone, an S/sqrt(B) = 0 point beside a signal point stays at 0.5, and eval.py re-tests a grid network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from torch.nn import functional as F

from dmlhc.data.ensembles import composed_scales, draw_event_indices, normalise
from dmlhc.models.architectures import HistogramDNN
from dmlhc.models.classifier import make_optimiser
from dmlhc.models.stacked import ComposedInputs, StackedDNN, select_networks

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (6, 5)


def _networks(n: int, dropout: float = 0.2, seed: int = 0) -> list[HistogramDNN]:
    torch.manual_seed(seed)
    nets = [HistogramDNN(SHAPE, dropout=dropout) for _ in range(n)]
    for net in nets:
        net.standardise.set_statistics(torch.rand(30), torch.rand(30) + 0.5)
    return nets


def test_stacked_networks_give_each_network_its_own_logits():
    nets = _networks(6)
    stack = StackedDNN(nets).eval()
    for net in nets:
        net.eval()
    own = torch.rand(6, 9, *SHAPE)
    alone = torch.stack([net(x).squeeze(-1) for net, x in zip(nets, own)])
    assert torch.allclose(stack(own), alone, atol=1e-5)
    shared = torch.rand(2, 9, *SHAPE)  # networks 0-2 share the first inputs, 3-5 the second
    alone = torch.stack([net(shared[i // 3]).squeeze(-1) for i, net in enumerate(nets)])
    assert torch.allclose(stack(shared), alone, atol=1e-5)
    assert torch.allclose(stack(shared[:1], slice(3, 6)), torch.stack([n(shared[0]).squeeze(-1) for n in nets[3:]]),
                          atol=1e-5)
    sparse = own.clone().flatten(2)
    sparse[..., ::3] = 0  # inputs on their non-zero bins only give what the full inputs give
    columns = torch.nonzero(sparse.flatten(0, 1).any(0)).squeeze(1)
    assert torch.allclose(stack(sparse[..., columns], columns=columns), stack(sparse.view_as(own)), atol=1e-5)
    for i, net in enumerate(nets):
        back = HistogramDNN(SHAPE)
        back.load_state_dict(stack.network_state(i, back))
        assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), net.state_dict().values()))


def _composed(n: int, hist: int, columns: torch.Tensor, how: str) -> tuple[ComposedInputs, torch.Tensor]:
    """Composed inputs of n networks in 3 points (2 of them with additions that raise rows' maxima) and the same
    inputs built: bank rows in each network's order plus its point's additions, normalised."""
    generator = torch.Generator().manual_seed(5)
    bank = torch.poisson(torch.full((hist, len(columns)), 40.0), generator=generator)
    bank[:, 3] += 30  # a peak bin, as a histogram's low-pT bins
    additions = torch.stack([torch.poisson(torch.full(bank.shape, rate), generator=generator)
                             for rate in (0.0, 1.0, 25.0)])
    orders = torch.stack([torch.randperm(hist, generator=generator) for _ in range(n)])
    groups = ((0, slice(0, 2)), (1, slice(2, 3)), (2, slice(3, n)))
    built = torch.zeros(n, hist, SHAPE[0] * SHAPE[1])
    for p, part in groups:
        built[part, :, columns] = normalise(bank[orders[part]] + additions[p], how)
    return ComposedInputs(bank, orders, additions, groups, composed_scales(bank, orders, additions, groups, how)), built


@pytest.mark.parametrize("how", ["max", "sum", "none"])
def test_composed_inputs_train_the_stack_as_the_inputs_they_compose(how):
    columns = torch.tensor([0, 2, 3, 5, 7, 11, 12, 17, 20, 29])  # the bins the pools fill; the others stay 0
    composed, built = _composed(5, 12, columns, how)
    assert composed.scales.shape == (5, 12)
    results = []
    for x, bins in ((composed, columns), (built[..., columns], columns), (built.view(5, 12, *SHAPE), None)):
        stack = StackedDNN(_networks(5, dropout=0.0))
        logits = stack(x, columns=bins)
        logits.square().sum().backward()
        results.append((logits.detach(), [p.grad for p in stack.parameters()]))
    for logits, grads in results[:2]:  # on the filled bins, composed or built, as on every bin
        assert torch.allclose(logits, results[2][0], atol=1e-4)
        assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(grads, results[2][1]))
    if how == "max":  # the additions of the largest point move some rows' maxima off the bank's own
        assert (composed.scales[3:] < 1 / composed.bank.amax(1)[composed.orders[3:]]).any()


def _train(stack: StackedDNN, optimiser, x, y, steps: int) -> None:
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(stack(x), y.expand(len(x), -1), reduction="none").mean(1).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_one_optimiser_over_the_stack_is_one_per_network(name):
    nets = _networks(4, dropout=0.0)
    stack = StackedDNN(nets)
    x, y = torch.rand(4, 16, *SHAPE), (torch.rand(16) > 0.5).float()
    _train(stack, make_optimiser(name, stack.parameters(), lr=1e-2, weight_decay=1.0), x, y, steps=5)
    for i, net in enumerate(nets):
        optimiser = make_optimiser(name, net.parameters(), lr=1e-2, weight_decay=1.0)
        for _ in range(5):
            loss = F.binary_cross_entropy_with_logits(net(x[i]).squeeze(-1), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        for key, value in stack.network_state(i, net).items():
            assert torch.allclose(value, net.state_dict()[key], atol=1e-5), key


def test_dropping_stopped_networks_keeps_the_others_training_state():
    def adamw(parameters):
        return torch.optim.AdamW(parameters, lr=1e-2, weight_decay=1.0)

    full, narrowed = StackedDNN(_networks(3, dropout=0.0)), StackedDNN(_networks(3, dropout=0.0))
    x, y = torch.rand(3, 16, *SHAPE), (torch.rand(16) > 0.5).float()
    first, second = adamw(full.parameters()), adamw(narrowed.parameters())
    _train(full, first, x, y, 3)
    _train(narrowed, second, x, y, 3)
    second = select_networks(narrowed, second, torch.tensor([0, 2]), adamw)
    _train(full, first, x, y, 3)
    _train(narrowed, second, x[[0, 2]], y, 3)
    like = HistogramDNN(SHAPE)
    for kept, original in ((0, 0), (1, 2)):
        for key, value in narrowed.network_state(kept, like).items():
            assert torch.allclose(value, full.network_state(original, like)[key], atol=1e-6), key


def test_redrawn_exact_subsets_are_distinct_and_uniform():
    generator = torch.Generator().manual_seed(3)
    rows = draw_event_indices(50, 20, 4000, generator=generator, subsets="redraw")
    assert all(len(set(row.tolist())) == 20 for row in rows)
    counts = torch.bincount(rows.flatten(), minlength=50).double()
    expected = 4000 * 20 / 50
    assert float(((counts - expected) ** 2 / expected).sum()) < 100  # chi2 with 49 dof: mean 49, std 10
    both = sum(1 for row in rows.tolist() if 0 in row and 1 in row)  # pairs as often as in uniform subsets
    pairs = 4000 * 20 * 19 / (50 * 49)
    assert abs(both - pairs) < 5 * pairs**0.5
    first = torch.bincount(rows[:, 0], minlength=50).double()  # in random order: any column is a uniform pick
    assert float(((first - 80) ** 2 / 80).sum()) < 100


# ----------------------------------------------------------------------------- end to end

# min_epochs 25: early stopping (patience ~11 epochs here) must wait for it in the grid as it does in Lightning
SETTINGS = ["debug=smoke", "signal=spin2_onshell", "trainer.max_epochs=40", "trainer.min_epochs=25", "data.n_val=2000",
            "data.n_test=4000", "callbacks.early_stopping.patience_histograms=20000"]


def _python(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                         env=os.environ)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A grid job (S/sqrt(B) = 0, 1.5 and 20, seeds 1 and 2) and single runs of seed 1 at 1.5 and 20, in one
    store."""
    cwd = tmp_path_factory.mktemp("grid")
    grid = _python("train.py", *SETTINGS, "grid.snr=[0,1.5,20]", "repeats=2", cwd=cwd)
    _python("train.py", *SETTINGS, "snr=1.5", "seed=1", "logger.mlflow.experiment_name=alone", cwd=cwd)
    _python("train.py", *SETTINGS, "snr=20", "seed=1", "logger.mlflow.experiment_name=saturated", cwd=cwd)
    client = mlflow.MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    return cwd, client, grid.stdout


def _runs(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=1000)


@pytest.mark.pythia
def test_a_grid_job_logs_every_network_as_a_single_run(trained):
    cwd, client, stdout = trained
    runs = _runs(client, "debug")
    (grid,) = [r for r in runs if r.data.tags.get("dmlhc.grid") == "true"]
    points = [r for r in runs if r.data.tags.get("dmlhc.repeat") == "parent"]
    seeds = [r for r in runs if r.data.tags.get("dmlhc.repeat") == "child"]
    assert len(runs) == 1 + 3 + 6 and all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["mlflow.parentRunId"] == grid.info.run_id for r in points)
    assert {r.data.tags["mlflow.parentRunId"] for r in seeds} == {r.info.run_id for r in points}
    assert sorted(float(r.data.params["snr"]) for r in points) == [0.0, 1.5, 20.0]
    assert {r.data.params["seed"] for r in seeds} == {"1", "2"}
    (alone,) = _runs(client, "alone")
    (twin,) = [r for r in seeds if r.data.params["snr"] == "1.5" and r.data.params["seed"] == "1"]
    differing = {k for k in alone.data.params if alone.data.params[k] != twin.data.params.get(k)}
    assert differing <= {"repeats", "checkpoint", "logger.mlflow.experiment_name", "paths.output_dir"}, differing
    assert set(alone.data.params) == set(twin.data.params)
    assert {k for k in set(alone.data.metrics) - set(twin.data.metrics) if not k.startswith("lr-")} == set()
    learning = [r for r in seeds if r.data.params["snr"] != "20.0"]
    assert all(25 <= int(r.data.metrics["epochs"]) <= 40 for r in learning)  # trainer.min_epochs and max_epochs
    for key in ("val/auc", "val/loss"):
        assert len(client.get_metric_history(twin.info.run_id, key)) == int(twin.data.metrics["epochs"])
    steps = {k: client.get_metric_history(twin.info.run_id, k)[-1].step for k in ("test/auc", "test/auc_optimal")}
    assert steps["test/auc"] == steps["test/auc_optimal"]
    assert {a.path for a in client.list_artifacts(twin.info.run_id, "checkpoints")} == {"checkpoints/best.ckpt"}
    assert "grid.csv" in {a.path for a in client.list_artifacts(grid.info.run_id)}
    assert "networks per minute" in stdout


@pytest.mark.pythia
def test_a_network_in_the_grid_reaches_what_it_reaches_alone_and_points_do_not_leak(trained):
    _, client, _ = trained
    (alone,) = _runs(client, "alone")
    seeds = [r for r in _runs(client, "debug") if r.data.tags.get("dmlhc.repeat") == "child"]
    (twin,) = [r for r in seeds if r.data.params["snr"] == "1.5" and r.data.params["seed"] == "1"]
    optimum = alone.data.metrics["test/auc_optimal"]
    assert twin.data.metrics["test/auc_optimal"] == pytest.approx(optimum, abs=1e-9)  # the same test set
    assert optimum > 0.75
    # 4000 test histograms: AUC noise ~0.006; the two trainings differ in their streams and dropout
    assert abs(twin.data.metrics["test/auc"] - alone.data.metrics["test/auc"]) < 0.02
    assert optimum - twin.data.metrics["test/auc"] < 0.02
    for null in (r for r in seeds if r.data.params["snr"] == "0.0"):
        assert abs(null.data.metrics["test/auc"] - 0.5) < 0.04  # 4 sigma of the test AUC's noise at 0.5


@pytest.mark.pythia
def test_val_auc_of_one_ends_a_run_at_once_in_the_grid_as_alone(trained):
    # no later epoch can be strictly better, so trainer.min_epochs (25) is not waited for: the run ends at its best
    _, client, _ = trained
    (alone,) = _runs(client, "saturated")
    saturated = [r for r in _runs(client, "debug") if r.data.tags.get("dmlhc.repeat") == "child"
                 and r.data.params["snr"] == "20.0"]
    for run in [alone, *saturated]:
        metrics = run.data.metrics
        assert metrics["best_val/auc"] == 1.0 and metrics["test/auc"] > 0.99
        assert metrics["epochs"] == metrics["best_epoch"] < 25, metrics


@pytest.mark.pythia
def test_eval_retests_a_grid_network_from_its_run(trained):
    cwd, client, _ = trained
    seeds = [r for r in _runs(client, "debug") if r.data.tags.get("dmlhc.repeat") == "child"]
    network = next(r for r in seeds if r.data.params["snr"] == "1.5")
    _python("eval.py", f"run_id={network.info.run_id}", cwd=cwd)
    (result,) = (cwd / "outputs" / "evals").glob("*/*/result.json")
    assert json.loads(result.read_text())["test/auc"] == pytest.approx(network.data.metrics["test/auc"], abs=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_stacked_networks_on_cuda_give_what_they_give_on_the_cpu():
    nets = _networks(6)
    x = torch.rand(2, 64, *SHAPE)
    on_cpu = StackedDNN(nets).eval()(x)
    on_cuda = StackedDNN(nets).cuda().eval()(x.cuda())
    assert torch.allclose(on_cuda.cpu(), on_cpu, atol=1e-4)
    columns = torch.tensor([0, 2, 3, 5, 7, 11, 12, 17, 20, 29])  # composed inputs and their gradients too
    composed, _ = _composed(5, 12, columns, "max")
    results = []
    for device in ("cpu", "cuda"):
        stack = StackedDNN(_networks(5, dropout=0.0)).to(device)
        parts = ComposedInputs(*(t.to(device) if torch.is_tensor(t) else t for t in vars(composed).values()))
        logits = stack(parts, columns=columns.to(device))
        logits.square().sum().backward()
        results.append([logits.detach().cpu()] + [p.grad.cpu() for p in stack.parameters()])
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(*results))


@pytest.mark.parametrize(("overrides", "message"), [
    (["grid.snr=0.5"], "grid.snr=0.5: give a list of S/sqrt(B) values"),
    (["grid.snr=[0.5,0.5]"], "every S/sqrt(B) once"),
    (["grid.snr=[0.5,abc]"], "grid.snr='abc': must be a finite number >= 0"),
    (["grid.snr=[0.5]", "model=multiclass"], "the grid trainer trains binary tasks"),
    (["grid.snr=[0.5]", "architecture=cnn"], "the grid trainer stacks HistogramDNN networks"),
])
def test_a_grid_it_cannot_train_is_refused_in_one_line(tmp_path, overrides, message):
    run = subprocess.run([sys.executable, str(ROOT / "train.py"), "debug=smoke", *overrides], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 2, run.stderr[-2000:]
    assert message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # refused before any run or sample


def test_bench_grid_prints_both_rates_and_their_ratio(own_store, tmp_path):
    """experiments/bench_grid.py end to end on smoke settings: both sides run and the ratio comes last (how fast
    either side is, is the benchmark's to measure, not a test's)."""
    out = tmp_path / "bench.json"
    run = own_store("experiments/bench_grid.py", "--snr", "0.447,1.118", "--repeats", "2", "--single", "1",
                    "--out", str(out), "--", "debug=smoke", "trainer.max_epochs=3", "trainer.min_epochs=1")
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.fullmatch(r"ratio grid / one at a time: \d+\.\dx", run.stdout.strip().splitlines()[-1])
    rates = json.loads(out.read_text())
    assert rates["grid_per_minute"] > 0 and rates["single_per_minute"] > 0
    assert rates["ratio"] == pytest.approx(rates["grid_per_minute"] / rates["single_per_minute"])


def test_bench_cpu_paths_checks_both_ways_agree_and_prints_their_ratios():
    run = _python("experiments/bench_cpu_paths.py", "--scale", "0.01", "--seconds", "0.02", cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    ratios = [float(m) for m in re.findall(r"ms\s+([\d.]+)x$", run.stdout, flags=re.MULTILINE)]
    assert len(ratios) == 4 and all(r > 0 for r in ratios)
    assert re.search(r"geometric mean of the ratios: [\d.]+x", run.stdout.splitlines()[-1])


def test_bench_composed_prints_both_step_times_and_their_ratio():
    run = _python("experiments/bench_composed.py", "--points", "2", "--seeds", "2", "--bins", "40", "--seconds", "0.05",
                  cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    times = [float(m) for m in re.findall(r"inputs:\s+([\d.]+) ms per step", run.stdout)]
    ratio = re.search(r"ratio built / composed: ([\d.]+)x", run.stdout.splitlines()[-1])
    assert len(times) == 2 and all(t > 0 for t in times) and ratio is not None
    assert float(ratio.group(1)) == pytest.approx(times[0] / times[1], rel=0.05)  # the times printed rounded

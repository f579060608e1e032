"""Bad inputs of the event stage, run as a user runs them: ``dmlhc generate``, ``dmlhc plot-kinematics``,
``dmlhc check-events`` (which reads files as training does) and ``python train.py ... background.files=[...]``.

Each case checks the exit code and the one ``dmlhc:`` line (tests/user_errors.py), and that the cache and output
folders hold exactly what they held before (nothing generated before the check, no ``*.partial`` left). Generating
cases use real Pythia at parton level with a few hundred events; the interrupt cases run a real ``dmlhc generate``
with two worker processes and signal it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import synthetic_sample
from user_errors import assert_user_error, default_sigint, run_entry_point, tree_state

from dmlhc.errors import CONFIG_ERROR_EXIT, INPUT_DATA_ERROR_EXIT, INTERRUPTED_EXIT, STORE_ERROR_EXIT
from dmlhc.events.delphes import read_delphes, write_delphes

UNWRITABLE = Path("/sys/dmlhc-test")  # sysfs: no new files, even for root (a chmod'ed folder is writable by root)
TINY = ["--benchmark", "sm", "--events", "300", "--quiet"]


@pytest.fixture
def dirs(tmp_path):
    """An empty cache and output folder; the test's runs use this cache."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    cache.mkdir()
    out.mkdir()
    return cache, out


def _run(argv, cwd, cache, **env):
    return run_entry_point(["dmlhc", *argv], cwd, env={"DMLHC_CACHE": str(cache), **env})


def _untouched(before: dict, *folders: Path) -> None:
    after = {str(f): tree_state(f) for f in folders}
    assert after == before
    assert not [p for f in folders for p in f.rglob("*.partial")]


def _state(*folders: Path) -> dict:
    return {str(f): tree_state(f) for f in folders}


# ----------------------------------------------------------------------------------------- event files
def _delphes(path: Path, kind: str = "ttree", **columns) -> None:
    """A Delphes-like file: ``kind`` 'ttree' (what Delphes writes) or 'rntuple' (plain ``f[name] = {...}``)."""
    pt = ak.Array([[210.0, 40.0], [180.0], [150.0, 30.0]])
    default = {"Jet.PT": pt, "Jet.Eta": pt * 0.01, "Jet.Phi": pt * 0.001, "MissingET.MET": np.array([200.0, 170.0,
               150.0]), "Event.Weight": np.ones(3)}
    data = {k: v for k, v in (default | columns).items() if v is not None}
    with uproot.recreate(path) as f:
        if kind == "rntuple":
            f["Delphes"] = data
        else:
            f.mktree("Delphes", {k: v.type.content if isinstance(v, ak.Array) else v.dtype for k, v in data.items()})
            f["Delphes"].extend(data)


def _truncated(path: Path) -> None:
    write_delphes(path, synthetic_sample(20_000))
    os.truncate(path, path.stat().st_size // 2)


BAD_FILES = {
    "missing": (lambda p: None, "no such file"),
    "a folder": (lambda p: p.mkdir(), "a folder, not a file"),
    "not ROOT": (lambda p: p.write_text("pT,eta\n200,0.1\n"), "not a ROOT file"),
    "no Delphes tree": (lambda p: uproot.recreate(p).__setitem__("Events", {"x": np.arange(3.0)}),
                        "no 'delphes' tree (the file holds: events)"),
    "empty tree": (lambda p: _delphes(p, **{"Jet.PT": ak.Array([[1.0]])[:0], "Jet.Eta": ak.Array([[1.0]])[:0],
                                           "Jet.Phi": ak.Array([[1.0]])[:0], "MissingET.MET": np.zeros(0),
                                           "Event.Weight": np.zeros(0)}), "tree holds no events"),
    "missing branch": (lambda p: _delphes(p, **{"MissingET.MET": None}), "lacks branches MissingET.MET"),
    "missing field (RNTuple)": (lambda p: _delphes(p, "rntuple", **{"Jet.Phi": None}),
                                "RNTuple 'Delphes' lacks branches Jet.Phi"),
    "jets not lists": (lambda p: _delphes(p, **{"Jet.PT": np.array([210.0, 180.0, 150.0])}),
                       "Jet.PT holds float64, not a list of numbers per event"),
    "strings": (lambda p: _delphes(p, "rntuple", **{"Event.Weight": np.array(["1", "1", "1"])}),
                "Event.Weight holds string, not a number per event"),
    "jet counts differ": (lambda p: _delphes(p, **{"Jet.Eta": ak.Array([[0.1], [0.2], [0.3]])}),
                          "hold different numbers of jets in 2 events"),
    "all pT NaN": (lambda p: _delphes(p, **{"Jet.PT": ak.Array([[np.nan, np.nan], [np.nan], [np.nan, np.nan]])}),
                   "none of its 3 events has a usable jet (dropped 5 jets (pT not finite: 5)"),
    "negative pT": (lambda p: _delphes(p, **{"Jet.PT": ak.Array([[-210.0, -40.0], [-180.0], [-150.0, -30.0]])}),
                    "none of its 3 events has a usable jet (dropped 5 jets (pT <= 0: 5)"),
    "truncated": (_truncated, "cannot be read, the file is damaged or truncated"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_an_unusable_event_file_is_named_with_its_problem(case, tmp_path):
    make, message = BAD_FILES[case]
    path = tmp_path / "events.root"
    make(path)
    before = _state(tmp_path)
    result = _run(["check-events", str(path)], tmp_path, tmp_path / "cache")
    assert_user_error(result, INPUT_DATA_ERROR_EXIT, f"input data error: {path}", message)
    _untouched(before, tmp_path)


def test_dropped_jets_are_counted_per_file(tmp_path):
    """NaN pT in 30% of leading jets, inf eta in one more: the jets go, their events keep the other jets."""
    pt = np.array([[300.0, 100.0]] * 10)
    pt[:3, 0] = np.nan
    eta = np.zeros_like(pt)
    eta[3, 0] = np.inf
    _delphes(tmp_path / "a.root", **{"Jet.PT": ak.Array(pt.tolist()), "Jet.Eta": ak.Array(eta.tolist()),
                                     "Jet.Phi": ak.Array(np.zeros_like(pt).tolist()),
                                     "MissingET.MET": np.ones(10), "Event.Weight": np.ones(10)})
    _delphes(tmp_path / "b.root")
    result = _run(["check-events", str(tmp_path / "a.root"), str(tmp_path / "b.root")], tmp_path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{tmp_path / 'a.root'}: 10 of 10 events kept",
                                          f"{tmp_path / 'b.root'}: 3 of 3 events kept"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("dmlhc: warning:")]
    assert warnings == [f"dmlhc: warning: {tmp_path / 'a.root'}: dropped 4 jets (pT not finite: 3, eta not finite: 1);"
                        " 10 of 10 events kept"]


def test_training_names_the_config_key_of_an_unusable_file(tmp_path):
    """``background.files=[...]`` is checked when the config is, before any sample is generated or run opened."""
    signal_file = write_delphes(tmp_path / "sig.root", synthetic_sample(500, seed=1))
    bad = tmp_path / "bkg.root"
    bad.write_text("not root")
    before = _state(tmp_path)
    result = run_entry_point(["train.py", "signal=delphes", f"signal.files=[{signal_file}]",
                              f"background.files=[{bad}]", "trainer=cpu", f"hydra.run.dir={tmp_path}/run",
                              f"paths.samples={tmp_path}/cache"], tmp_path)
    assert_user_error(result, INPUT_DATA_ERROR_EXIT, f"background.files: {bad}: not a ROOT file")
    after = _state(tmp_path)
    assert {k: {f: h for f, h in v.items() if not f.startswith("run/")} for k, v in after.items()} == before
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------------------- command line
@pytest.mark.parametrize("argv,message", [
    (["--benchmark", "sm", "--events", "0"], "the number of events must be positive, got 0"),
    (["--benchmark", "sm", "--events", "many"], "argument --events: invalid int value: 'many'"),
    (["--benchmark", "sm", "--seed", "-1"], "seed must be in [0, 900000000), got -1"),
    (["--benchmark", "sm", "--seed", "900000000"], "seed must be in [0, 900000000)"),
    (["--benchmark", "sm", "--level", "detector"], "argument --level: invalid choice: 'detector'"),
    (["--benchmark", "sm", "--workers", "0"], "workers=0: give at least 1"),
    (["--benchmark", "spin3_onshell"], "unknown benchmark 'spin3_onshell'; choose one of sm"),
    (["--benchmark", "sm", "--spin", "1"], "give either --benchmark or --spin/--mediator-mass/--dm-mass, not both"),
    (["--spin", "3", "--mediator-mass", "1000", "--dm-mass", "10"], "argument --spin: invalid choice: 3"),
    (["--spin", "1", "--mediator-mass", "-1000", "--dm-mass", "10"], "--mediator-mass -1000.0: masses must be finite"),
    (["--spin", "1", "--mediator-mass", "1000", "--dm-mass", "nan"], "--dm-mass nan: masses must be finite"),
    (["--spin", "1", "--mediator-mass", "1000", "--dm-mass", "4000"], "--dm-mass 4000: 2 m_chi = 8000 gev"),
    (["--spin", "1", "--mediator-mass", "1000"], "give --benchmark name, or all of --spin, --mediator-mass"),
])
def test_generate_rejects_bad_arguments_before_generating(argv, message, dirs):
    before = _state(*dirs)
    result = _run(["generate", *argv, "--quiet"], dirs[1], dirs[0])
    assert_user_error(result, CONFIG_ERROR_EXIT, "configuration error", message)
    _untouched(before, *dirs)


@pytest.mark.parametrize("out,message", [
    ("missing/x.root", "output path missing/x.root: the folder missing does not exist; create it"),
    (".", "is a folder; give a file path in it"),
    ("/sys/x.root", "folder /sys: cannot write there"),
])
def test_generate_checks_the_output_path_before_generating(out, message, dirs):
    cache, out_dir = dirs
    before = _state(*dirs)
    result = _run(["generate", *TINY, "--out", out], out_dir, cache)
    assert_user_error(result, STORE_ERROR_EXIT, "store error: output path", message)
    _untouched(before, *dirs)  # nothing was generated: the cache is still empty


@pytest.mark.parametrize("how,message", [
    ({"DMLHC_CACHE": str(UNWRITABLE)}, "sample cache /sys/dmlhc-test: cannot write there; point $dmlhc_cache"),
    ({"--cache": "a-file/cache"}, "sample cache a-file/cache: cannot write there (not a directory); point --cache"),
])
def test_an_unwritable_cache_is_named_before_generating(how, message, dirs):
    cache, out_dir = dirs
    (out_dir / "a-file").write_text("")
    before = _state(*dirs)
    argv = ["generate", *TINY, *(["--cache", how["--cache"]] if "--cache" in how else [])]
    result = run_entry_point(["dmlhc", *argv], out_dir, env={"DMLHC_CACHE": how.get("DMLHC_CACHE", str(cache))})
    assert_user_error(result, STORE_ERROR_EXIT, *message.split("; "))
    _untouched(before, *dirs)


@pytest.mark.parametrize("argv,code,message", [
    (["--benchmarks", "spin1_onshell", "nope"], CONFIG_ERROR_EXIT, "unknown benchmark 'nope'"),
    (["--out-dir", "/sys/kinematics"], STORE_ERROR_EXIT, "--out-dir /sys/kinematics: cannot write there"),
    (["--events", "-5"], CONFIG_ERROR_EXIT, "the number of events must be positive, got -5"),
])
def test_plot_kinematics_checks_everything_before_generating(argv, code, message, dirs):
    before = _state(*dirs)
    result = _run(["plot-kinematics", "--quiet", *argv], dirs[1], dirs[0])
    assert_user_error(result, code, message)
    _untouched(before, *dirs)


# ------------------------------------------------------------------------------------------ the cache
def _damage_by_truncating(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _damage_by_flipping_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))


@pytest.mark.pythia
@pytest.mark.parametrize("damage,reason", [(_damage_by_truncating, "bytes, not the"),
                                           (_damage_by_flipping_bytes, "does not match the sha-256")])
def test_a_damaged_cached_sample_is_regenerated_saying_so(damage, reason, dirs):
    cache, out_dir = dirs
    first = _run(["generate", *TINY], out_dir, cache)
    assert first.returncode == 0, first.stderr
    cached = Path(first.stdout.strip())
    damage(cached)
    result = _run(["generate", *TINY, "--out", "copy.root"], out_dir, cache)
    assert result.returncode == 0, result.stderr
    assert f"dmlhc: warning: cached sample {cached} " in result.stderr and "; regenerating it" in result.stderr
    assert reason in result.stderr.lower()
    assert len(read_delphes(out_dir / "copy.root")) == 300 and len(read_delphes(cached)) == 300
    record = json.loads((cache / f"{cached.name}.check.json").read_text())
    assert record["size"] == cached.stat().st_size
    assert sorted(p.name for p in cache.iterdir()) == [cached.name, f"{cached.name}.check.json"]
    again = _run(["generate", *TINY], out_dir, cache)  # a good file is used as it is
    assert again.returncode == 0 and "warning" not in again.stderr
    assert _state(cache) == {str(cache): tree_state(cache)}


@pytest.mark.pythia
def test_training_samples_come_from_a_verified_cache(dirs):
    """data/samples.py loads generated samples through the same check: a truncated one is made again."""
    from dmlhc.data.samples import load

    cache = dirs[0]
    spec = {"name": "sm", "benchmark": "sm", "files": None, "events": 300}
    first = load(spec, {"seed": 7, "workers": 1}, str(cache))
    cached = next(cache.glob("*.root"))
    _damage_by_truncating(cached)
    with pytest.MonkeyPatch.context():
        from dmlhc.data import samples

        samples._generated.cache_clear()
        again = load(spec, {"seed": 7, "workers": 1}, str(cache))
    np.testing.assert_array_equal(again.leading_jet()["pt"], first.leading_jet()["pt"])
    assert len(read_delphes(cached)) == 300


@pytest.mark.pythia
def test_a_cached_sample_without_a_record_is_read_once_and_kept(dirs):
    """Samples cached before records existed are checked by reading them, not regenerated."""
    cache, out_dir = dirs
    cached = Path(_run(["generate", *TINY], out_dir, cache).stdout.strip())
    (cache / f"{cached.name}.check.json").unlink()
    content = cached.read_bytes()
    result = _run(["generate", *TINY], out_dir, cache)
    assert result.returncode == 0 and "warning" not in result.stderr
    assert cached.read_bytes() == content and (cache / f"{cached.name}.check.json").is_file()


# ------------------------------------------------------------------------------------------- interrupts
def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a thread may end between listing and reading: it has none then)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return children


def _alive(pid: int) -> bool:
    """Running, not a zombie (a container's init may never reap an orphan)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


_STARTED: list[subprocess.Popen] = []  # the generations a test started: killed after it whatever happened


@pytest.fixture(autouse=True)
def _no_generation_outlives_its_test():
    yield
    while _STARTED:
        process = _STARTED.pop()
        with contextlib.suppress(ProcessLookupError):  # a failed test must not leave Pythia running (its workers too)
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)  # reaped, pipes closed


def _start_long_generation(cwd: Path, cache: Path, settle: float = 1.0) -> tuple[subprocess.Popen, list[int]]:
    """``dmlhc generate`` at shower level on two workers, far from done; returns ``settle`` seconds after the
    workers were forked (0: while the pool is still starting)."""
    command = [sys.executable, "-m", "dmlhc.cli", "generate", "--benchmark", "sm", "--events", "1000000", "--level",
               "shower", "--workers", "2", "--quiet"]
    env = {**os.environ, "DMLHC_CACHE": str(cache)}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=default_sigint)
    _STARTED.append(process)
    deadline = time.monotonic() + 60
    while len(workers := _children(process.pid)) < (2 if settle else 1):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.001)
    time.sleep(settle)
    return process, workers + [w for w in _children(process.pid) if w not in workers]


def _wait(process: subprocess.Popen, workers: list[int], seconds: float = 5.0) -> float:
    """Seconds until the process exited and no worker lives; fails beyond ``seconds``."""
    start = time.monotonic()
    while (process.poll() is None or any(map(_alive, workers))) and time.monotonic() - start < seconds:
        time.sleep(0.02)
    assert process.poll() is not None, "still running"
    assert not [w for w in workers if _alive(w)], "a worker survived"
    return time.monotonic() - start


@pytest.mark.pythia
@pytest.mark.parametrize("how", ["Ctrl-C once", "Ctrl-C twice", "Ctrl-C in the terminal", "Ctrl-C as workers start"])
def test_ctrl_c_stops_generation_at_once_and_leaves_nothing(how, dirs):
    """A Ctrl-C inside fork() used to be lost (and the run went on); one that left the pool half-started hung."""
    cache, out_dir = dirs
    process, workers = _start_long_generation(out_dir, cache, settle=0.0 if how == "Ctrl-C as workers start" else 1.0)
    if how == "Ctrl-C in the terminal":  # the whole foreground process group gets SIGINT
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGINT)
        if how == "Ctrl-C twice":
            time.sleep(0.05)
            process.send_signal(signal.SIGINT)
    assert _wait(process, workers, seconds=15.0) < 15.0  # a hang check with room for a busy machine
    _, stderr = process.communicate()
    # a second Ctrl-C landing after the first one's exit(130) began ends the process by SIGINT: a shell shows 130 too
    assert process.returncode in (INTERRUPTED_EXIT, -signal.SIGINT), stderr[-2000:]
    assert "dmlhc: interrupted; no partial file was kept" in stderr and "Traceback" not in stderr
    assert tree_state(cache) == {}


@pytest.mark.pythia
def test_workers_die_with_a_killed_parent(dirs):
    cache, out_dir = dirs
    process, workers = _start_long_generation(out_dir, cache)
    process.kill()
    _wait(process, workers)
    process.communicate()
    assert tree_state(cache) == {}

"""Delphes-schema event files: round trip, foreign files written by plain uproot, bad input."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from dmlhc.events.delphes import EventFileError, read_delphes, write_delphes


def test_round_trip_keeps_every_field(tmp_path, sample):
    path = write_delphes(tmp_path / "s.root", sample)
    back = read_delphes(path)
    assert len(back) == len(sample)
    for name in ("jet_pt", "jet_eta", "jet_phi"):
        np.testing.assert_allclose(ak.flatten(getattr(back, name)), ak.flatten(getattr(sample, name)), rtol=1e-6)
    np.testing.assert_allclose(back.met, sample.met, rtol=1e-6)
    assert back.metadata["seed"] == 0 and back.metadata["n_events_read"] == len(sample)
    assert back.metadata["dropped"] == {"jets": {}, "events": {"no jet in the file": 0, "every jet dropped": 0}}


def test_file_has_the_delphes_branch_names(tmp_path, sample):
    path = write_delphes(tmp_path / "s.root", sample)
    with uproot.open(path) as f:
        names = set(f["Delphes"].keys())
        assert {"Jet.PT", "Jet.Eta", "Jet.Phi", "MissingET.MET", "Event.Weight", "Jet_size"} <= names
        assert ak.all(f["Delphes"]["Jet_size"].array() == ak.num(sample.jet_pt))


def test_no_partial_file_is_left_behind(tmp_path, sample):
    write_delphes(tmp_path / "s.root", sample)
    assert [p.name for p in tmp_path.iterdir()] == ["s.root"]


def test_reads_a_delphes_file_written_by_plain_uproot(tmp_path):
    """A user's file: jets unsorted, events without jets, extra collections, no dmlhc metadata (an RNTuple)."""
    pt = ak.Array([[50.0, 210.0], [], [180.0], [140.0, 20.0, 30.0]])
    eta = ak.Array([[0.5, -1.0], [], [2.0], [0.1, 3.0, -3.0]])
    with uproot.recreate(tmp_path / "delphes.root") as f:
        f["Delphes"] = {
            "Jet.PT": pt, "Jet.Eta": eta, "Jet.Phi": eta * 0.5,
            "MissingET.MET": ak.Array([[200.0], [10.0], [170.0], [150.0]]),
            "Event.Weight": ak.Array([[1.0], [1.0], [2.0], [1.0]]),
            "Electron.PT": ak.Array([[], [30.0], [], []]),
        }
    sample = read_delphes(tmp_path / "delphes.root")
    assert sample.metadata["dropped"]["events"] == {"no jet in the file": 1, "every jet dropped": 0}
    assert len(sample) == 3
    lead = sample.leading_jet()
    np.testing.assert_allclose(lead["pt"], [210.0, 180.0, 140.0])
    np.testing.assert_allclose(lead["eta"], [-1.0, 2.0, 0.1])
    np.testing.assert_allclose(sample.weight, [1.0, 2.0, 1.0])


def test_reads_an_rntuple_of_collections(tmp_path, sample):
    """``f["Delphes"] = {"Jet": ak.zip({"PT": ...}), ...}`` in uproot 5.7: an RNTuple with record fields."""
    with uproot.recreate(tmp_path / "records.root") as f:
        f["Delphes"] = {"Jet": ak.zip({"PT": sample.jet_pt, "Eta": sample.jet_eta, "Phi": sample.jet_phi}),
                        "MissingET": ak.zip({"MET": ak.unflatten(sample.met, 1)}),
                        "Event": ak.zip({"Weight": ak.unflatten(sample.weight, 1)})}
    with uproot.open(tmp_path / "records.root") as f:
        assert f["Delphes"].classname == "ROOT::RNTuple"
    back = read_delphes(tmp_path / "records.root")
    np.testing.assert_array_equal(ak.flatten(back.jet_eta), ak.flatten(sample.jet_eta))
    np.testing.assert_array_equal(back.met, sample.met)


def test_a_jet_that_is_not_finite_or_not_positive_is_dropped_and_its_event_keeps_the_others(tmp_path, caplog):
    pt = ak.Array([[np.nan, 210.0, 50.0], [np.inf], [180.0, -5.0], [0.0], [140.0, 20.0, 30.0], [300.0, 40.0], []])
    eta = ak.Array([[0.0, 1.0, 2.0], [0.0], [3.0, 0.0], [0.0], [4.0, 5.0, 6.0], [np.nan, 0.5], []])
    phi = ak.Array([[0.0, 0.1, 0.2], [0.0], [0.3, 0.0], [0.0], [0.4, 0.5, 0.6], [0.7, -np.inf], []])
    with uproot.recreate(tmp_path / "bad_jets.root") as f:
        f["Delphes"] = {"Jet.PT": pt, "Jet.Eta": eta, "Jet.Phi": phi, "MissingET.MET": np.arange(7.0),
                        "Event.Weight": np.ones(7)}
    sample = read_delphes(tmp_path / "bad_jets.root")
    assert sample.jet_pt.tolist() == [[210.0, 50.0], [180.0], [140.0, 30.0, 20.0]]  # re-ordered by pT
    assert sample.jet_eta.tolist() == [[1.0, 2.0], [3.0], [4.0, 6.0, 5.0]]
    np.testing.assert_array_equal(sample.met, [0.0, 2.0, 4.0])
    assert sample.metadata["dropped"] == {
        "jets": {"pT not finite": 2, "eta not finite": 1, "phi not finite": 1, "pT <= 0": 2},
        "events": {"no jet in the file": 1, "every jet dropped": 3}}
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'bad_jets.root'}: dropped 6 jets (pT not finite: 2, eta not finite: 1, phi not finite: 1, "
        "pT <= 0: 2), 4 events (no jet in the file: 1, every jet dropped: 3); 3 of 7 events kept"]


def test_not_a_root_file(tmp_path):
    bad = tmp_path / "events.root"
    bad.write_text("pT,eta\n200,0.1\n")
    with pytest.raises(EventFileError, match=r"events\.root: not a ROOT file"):
        read_delphes(bad)


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(EventFileError, match="no such file.*dmlhc generate"):
        read_delphes(tmp_path / "absent.root")


def test_no_delphes_tree_lists_what_is_there(tmp_path):
    with uproot.recreate(tmp_path / "other.root") as f:
        f["Events"] = {"x": np.arange(3.0)}
    with pytest.raises(EventFileError, match=r"no 'Delphes' tree \(the file holds: Events\)"):
        read_delphes(tmp_path / "other.root")


def test_missing_branches_are_named(tmp_path):
    with uproot.recreate(tmp_path / "nomet.root") as f:
        f["Delphes"] = {"Jet.PT": ak.Array([[200.0]]), "Jet.Eta": ak.Array([[0.0]]), "Jet.Phi": ak.Array([[0.0]])}
    with pytest.raises(EventFileError, match="lacks branches MissingET.MET, Event.Weight"):
        read_delphes(tmp_path / "nomet.root")


def test_zero_events_with_a_jet(tmp_path):
    no_jets = ak.unflatten(np.zeros(0), [0, 0])
    with uproot.recreate(tmp_path / "empty.root") as f:
        f["Delphes"] = {"Jet.PT": no_jets, "Jet.Eta": no_jets, "Jet.Phi": no_jets,
                        "MissingET.MET": ak.Array([[1.0], [2.0]]), "Event.Weight": ak.Array([[1.0], [1.0]])}
    with pytest.raises(EventFileError, match=r"none of its 2 events has a usable jet \(dropped 2 events \(no jet"):
        read_delphes(tmp_path / "empty.root")

"""Event files in the Delphes schema, written and read with uproot + awkward.

Tree ``Delphes`` with the jagged branches ``Jet.PT``, ``Jet.Eta``, ``Jet.Phi``,
``MissingET.MET`` and ``Event.Weight`` (one entry per event for the last two, as
Delphes writes them). The embedded generator writes this schema and the same reader
takes a user's real Delphes output, so nothing downstream knows where events came
from. Generator metadata (cross section, counts, settings, seed, versions) is stored
beside the tree as a JSON ``TObjString`` named ``dmlhc_metadata``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from dmlhc.errors import InputDataError
from dmlhc.events.cache import atomic_target

TREE = "Delphes"
METADATA_KEY = "dmlhc_metadata"
JET_BRANCHES = ("Jet.PT", "Jet.Eta", "Jet.Phi")
REQUIRED_BRANCHES = (*JET_BRANCHES, "MissingET.MET", "Event.Weight")


class EventFileError(InputDataError):
    """A ROOT file that cannot be used as an event sample; the message says why and what to do."""


@dataclass
class EventSample:
    """Events of one sample: jets (jagged, pT-ordered), MET and weight per event."""

    jet_pt: ak.Array
    jet_eta: ak.Array
    jet_phi: ak.Array
    met: np.ndarray
    weight: np.ndarray
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.met)

    def leading_jet(self) -> dict[str, np.ndarray]:
        """The leading jet's pT, eta, phi of every event (events must have a jet)."""
        return {
            "pt": ak.to_numpy(self.jet_pt[:, 0]).astype(np.float64),
            "eta": ak.to_numpy(self.jet_eta[:, 0]).astype(np.float64),
            "phi": ak.to_numpy(self.jet_phi[:, 0]).astype(np.float64),
        }


def write_delphes(path: str | os.PathLike, sample: EventSample) -> Path:
    """Write ``sample`` to ``path`` atomically (temporary name, then rename)."""
    branches = {
        "Jet": ak.zip({"PT": sample.jet_pt, "Eta": sample.jet_eta, "Phi": sample.jet_phi}),
        "MissingET": ak.zip({"MET": _one_per_event(sample.met)}),
        "Event": ak.zip({"Weight": _one_per_event(sample.weight)}),
    }
    branches = {name: ak.values_astype(array, np.float32) for name, array in branches.items()}
    with atomic_target(path) as tmp, uproot.recreate(tmp) as f:
        f.mktree(
            TREE,
            {name: array.type for name, array in branches.items()},
            counter_name=lambda counted: f"{counted}_size",
            field_name=lambda outer, inner: f"{outer}.{inner}",
        )
        f[TREE].extend(branches)
        f[METADATA_KEY] = json.dumps(sample.metadata, sort_keys=True, default=_json_default)
    return Path(path)


def read_delphes(path: str | os.PathLike) -> EventSample:
    """Read an event file in the Delphes schema (ours or real Delphes output).

    Events without any jet are dropped; their number is in
    ``metadata["n_dropped_no_jet"]``.
    """
    path = Path(path)
    if not path.is_file():
        raise EventFileError(f"{path}: no such file; check the path or run `dmlhc generate` to make one")
    try:
        f = uproot.open(path)
    except Exception as err:  # uproot raises several types for non-ROOT input
        raise EventFileError(
            f"{path}: not a ROOT file ({type(err).__name__}); "
            "give a Delphes ROOT output or a file from `dmlhc generate`"
        ) from None
    with f:
        if TREE not in f:
            keys = ", ".join(k.split(";")[0] for k in f.keys()) or "nothing"
            raise EventFileError(
                f"{path}: no '{TREE}' tree (the file holds: {keys}); "
                "give Delphes output or a file from `dmlhc generate`"
            )
        tree = f[TREE]
        names = set(tree.keys(recursive=True, full_paths=False))
        missing = [b for b in REQUIRED_BRANCHES if b not in names]
        if missing:
            raise EventFileError(
                f"{path}: tree '{TREE}' lacks branches {', '.join(missing)}; "
                "run Delphes with a card that keeps the Jet, MissingET and Event collections"
            )
        arrays = tree.arrays(list(REQUIRED_BRANCHES), library="ak")
        metadata = json.loads(str(f[METADATA_KEY])) if METADATA_KEY in f else {"source": "external Delphes file"}

    jet_pt, jet_eta, jet_phi = (arrays[b] for b in JET_BRANCHES)
    order = ak.argsort(jet_pt, axis=1, ascending=False)  # Delphes sorts by pT; be sure
    jet_pt, jet_eta, jet_phi = jet_pt[order], jet_eta[order], jet_phi[order]
    has_jet = ak.num(jet_pt, axis=1) > 0
    metadata["n_dropped_no_jet"] = int(ak.sum(~has_jet))
    if not ak.any(has_jet):
        raise EventFileError(
            f"{path}: zero events with a jet ({len(has_jet)} events in the tree); "
            "check the Delphes jet collection or generate a larger sample"
        )
    return EventSample(
        jet_pt=jet_pt[has_jet],
        jet_eta=jet_eta[has_jet],
        jet_phi=jet_phi[has_jet],
        met=_first_or(arrays["MissingET.MET"][has_jet], 0.0),
        weight=_first_or(arrays["Event.Weight"][has_jet], 1.0),
        metadata=metadata,
        path=path,
    )


def _one_per_event(values: np.ndarray) -> ak.Array:
    values = np.asarray(values, dtype=np.float32)
    return ak.unflatten(values, np.ones(len(values), dtype=np.int64))  # jagged, as Delphes


def _first_or(jagged: ak.Array, default: float) -> np.ndarray:
    return ak.to_numpy(ak.fill_none(ak.firsts(jagged), default)).astype(np.float64)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in metadata")

"""Event files in the Delphes schema, written and read with uproot + awkward.

Tree ``Delphes`` with the jagged branches ``Jet.PT``, ``Jet.Eta``, ``Jet.Phi``,
``MissingET.MET`` and ``Event.Weight`` (one entry per event for the last two, as
Delphes writes them). The embedded generator writes this schema and the same reader
takes a user's real Delphes output, so nothing downstream knows where events came
from. Generator metadata (cross section, counts, settings, seed, versions) is stored
beside the tree as a JSON ``TObjString`` named ``dmlhc_metadata``.

Reading takes a TTree (Delphes) or an RNTuple (what ``f["Delphes"] = {...}`` writes in
uproot 5.7). A jet with a non-finite pT, eta or phi, or pT <= 0, is dropped and its event
keeps its other jets; an event left without jets is dropped. The counts, by reason, are
logged per file and stored in the sample's ``metadata["dropped"]``. A file that cannot be
used raises :class:`EventFileError` naming the file, the problem and the fix.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
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

log = logging.getLogger(__name__)


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


def concatenate(samples: Sequence[EventSample], metadata: dict | None = None) -> EventSample:
    """The events of ``samples``, one after another, with ``metadata`` (default none)."""
    jets = {f: ak.concatenate([getattr(s, f) for s in samples]) for f in ("jet_pt", "jet_eta", "jet_phi")}
    return EventSample(**jets, met=np.concatenate([s.met for s in samples]),
                       weight=np.concatenate([s.weight for s in samples]), metadata=dict(metadata or {}))


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
    """Read an event file in the Delphes schema (ours or real Delphes output; a TTree or an RNTuple).

    A jet is dropped if its pT, eta or phi is not finite or its pT is not positive; its event
    keeps its other jets, re-ordered by pT. Events left without a jet are dropped. What was
    dropped, and why, is logged once per file and kept in ``metadata["dropped"]``.
    """
    path = Path(path)
    columns, metadata = _read_columns(path)
    n_events = len(columns["MissingET.MET"])
    if n_events == 0:
        raise EventFileError(f"{path}: the '{TREE}' tree holds no events; give a file with events")
    jets, dropped_jets = _valid_jets(*(columns[b] for b in JET_BRANCHES))
    had_jet = ak.to_numpy(ak.num(columns["Jet.PT"], axis=1) > 0)
    has_jet = ak.to_numpy(ak.num(jets[0], axis=1) > 0)
    dropped = {"jets": dropped_jets, "events": {"no jet in the file": int(np.sum(~had_jet)),
                                                "every jet dropped": int(np.sum(had_jet & ~has_jet))}}
    summary = _describe(dropped)
    if not has_jet.any():
        raise EventFileError(
            f"{path}: none of its {n_events} events has a usable jet (dropped {summary}); jets need a finite pT, "
            "eta and phi and pT > 0: check how Jet.PT, Jet.Eta and Jet.Phi were filled"
        )
    if summary:
        log.warning("%s: dropped %s; %d of %d events kept", path, summary, int(has_jet.sum()), n_events)
    metadata |= {"n_events_read": n_events, "dropped": dropped}
    jet_pt, jet_eta, jet_phi = (j[has_jet] for j in jets)
    return EventSample(
        jet_pt, jet_eta, jet_phi,
        met=_per_event(columns["MissingET.MET"], 0.0)[has_jet],
        weight=_per_event(columns["Event.Weight"], 1.0)[has_jet],
        metadata=metadata,
        path=path,
    )


def _read_columns(path: Path) -> tuple[dict[str, ak.Array], dict]:
    """The required columns (checked: present, numbers, jets as lists) and the stored metadata."""
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise EventFileError(f"{path}: {what}; check the path or run `dmlhc generate` to make one")
    try:
        f = uproot.open(path)
    except Exception as err:  # uproot raises several types for non-ROOT input
        raise EventFileError(
            f"{path}: not a ROOT file ({type(err).__name__}); give a Delphes ROOT output or a file from "
            "`dmlhc generate`"
        ) from None
    try:
        with f:
            if TREE not in f:
                keys = ", ".join(k.split(";")[0] for k in f.keys()) or "nothing"
                raise EventFileError(f"{path}: no '{TREE}' tree (the file holds: {keys}); "
                                     "give Delphes output or a file from `dmlhc generate`")
            columns = _columns(path, f[TREE])
            metadata = json.loads(str(f[METADATA_KEY])) if METADATA_KEY in f else {"source": "external Delphes file"}
    except EventFileError:
        raise
    except Exception as err:  # a truncated or damaged file fails in uproot's decompression or deserialisation
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise EventFileError(f"{path}: cannot be read, the file is damaged or truncated ({type(err).__name__}: "
                             f"{first_line}); copy or write it again") from None
    _check_types(path, columns)
    return columns, metadata


def _columns(path: Path, tree) -> dict[str, ak.Array]:
    """Read the required columns of a TTree (Delphes' branches ``Jet.PT``, ...) or an RNTuple (fields ``Jet.PT``,
    or record fields ``Jet`` with ``PT``, as ``f["Delphes"] = {...}`` writes them in uproot 5.7)."""
    if tree.classname != "ROOT::RNTuple":
        names = set(tree.keys(recursive=True, full_paths=False))
        _require(path, "tree", [b for b in REQUIRED_BRANCHES if b not in names])
        arrays = tree.arrays(list(REQUIRED_BRANCHES), library="ak")
        return {b: arrays[b] for b in REQUIRED_BRANCHES}
    top, paths = set(tree.keys(recursive=False)), set(tree.keys(recursive=True, full_paths=True))
    where = {b: (b, "") if b in top else b.split(".", 1) for b in REQUIRED_BRANCHES if b in top or b in paths}
    _require(path, "RNTuple", [b for b in REQUIRED_BRANCHES if b not in where])
    arrays = tree.arrays(sorted({outer for outer, _ in where.values()}))
    return {b: arrays[outer][inner] if inner else arrays[outer] for b, (outer, inner) in where.items()}


def _require(path: Path, kind: str, missing: list[str]) -> None:
    if missing:
        raise EventFileError(f"{path}: {kind} '{TREE}' lacks branches {', '.join(missing)}; run Delphes with a "
                             "card that keeps the Jet, MissingET and Event collections")


_NUMBER = r"(float|int|uint)\d+"


def _check_types(path: Path, columns: dict[str, ak.Array]) -> None:
    """Jets must be lists of numbers per event; MET and weight numbers, one per event or in a list (Delphes)."""
    for name, column in columns.items():
        kind = str(ak.type(column).content)
        jagged = re.fullmatch(rf"(var|\d+) \* {_NUMBER}", kind) is not None
        if jagged or (name not in JET_BRANCHES and re.fullmatch(_NUMBER, kind)):
            continue
        wanted = "a list of numbers per event (var * float)" if name in JET_BRANCHES else "a number per event"
        raise EventFileError(f"{path}: branch {name} holds {kind}, not {wanted}; write it as Delphes does")
    counts = [ak.num(columns[b], axis=1) for b in JET_BRANCHES]
    differ = int(ak.sum((counts[0] != counts[1]) | (counts[0] != counts[2])))
    if differ:
        raise EventFileError(f"{path}: Jet.PT, Jet.Eta and Jet.Phi hold different numbers of jets in {differ} "
                             "events; write one entry per jet in each")


#: Why a jet is dropped, checked in this order (a jet counts under its first reason).
JET_DROP_REASONS = ("pT not finite", "eta not finite", "phi not finite", "pT <= 0")


def _valid_jets(pt: ak.Array, eta: ak.Array, phi: ak.Array) -> tuple[tuple[ak.Array, ...], dict[str, int]]:
    """Jets with finite pT, eta, phi and pT > 0, ordered by pT (descending); dropped jets counted by reason."""
    pt, eta, phi = (ak.values_astype(x, np.float64) for x in (pt, eta, phi))
    fails = [~np.isfinite(pt), ~np.isfinite(eta), ~np.isfinite(phi), np.isfinite(pt) & (pt <= 0)]
    bad = fails[0] | fails[1] | fails[2] | fails[3]
    counted = {}
    seen = ak.zeros_like(bad)
    for reason, fail in zip(JET_DROP_REASONS, fails):
        counted[reason] = int(ak.sum(fail & ~seen))
        seen = seen | fail
    pt, eta, phi = pt[~bad], eta[~bad], phi[~bad]
    order = ak.argsort(pt, axis=1, ascending=False, stable=True)  # Delphes sorts by pT; be sure
    return (pt[order], eta[order], phi[order]), {k: v for k, v in counted.items() if v}


def _describe(dropped: dict[str, dict[str, int]]) -> str:
    """``"3 jets (pT not finite: 2, pT <= 0: 1), 1 event (every jet dropped: 1)"``; empty when nothing was."""
    parts = []
    for what, reasons in dropped.items():
        total = sum(reasons.values())
        if total:
            detail = ", ".join(f"{reason}: {n}" for reason, n in reasons.items() if n)
            parts.append(f"{total} {what if total > 1 else what[:-1]} ({detail})")
    return ", ".join(parts)


def _per_event(column: ak.Array, default: float) -> np.ndarray:
    """One number per event: the first of a Delphes list (``default`` if empty), or the number itself."""
    if column.ndim > 1:
        column = ak.fill_none(ak.firsts(column), default)
    return ak.to_numpy(column).astype(np.float64)


def _one_per_event(values: np.ndarray) -> ak.Array:
    values = np.asarray(values, dtype=np.float32)
    return ak.unflatten(values, np.ones(len(values), dtype=np.int64))  # jagged, as Delphes


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in metadata")

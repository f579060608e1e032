"""The benchmark dark-matter models of the paper (Table 1) and user-defined points.

A benchmark is fixed by the mediator spin and two masses: couplings and the DM spin
change only the rate, not the jet kinematics (docs/method.md). The ALP is its own
framework: a pseudo-scalar a coupled to gluons through a G Gdual, produced directly
and escaping the detector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dmlhc.errors import ConfigError

M_Z = 91.19  # GeV

#: The ALP mass of the paper is 1e-5 GeV. Pythia refuses to initialise its gluon-fusion
#: processes below about 0.05 GeV, so the generator uses this mass instead: at
#: pT >= 130 GeV the kinematics differ by (m/pT)^2 < 1e-6, i.e. not at all.
ALP_GENERATED_MASS = 0.1


@dataclass(frozen=True)
class Benchmark:
    """One signal model (or the SM background, ``framework == "sm"``)."""

    name: str
    framework: str  # "sm", "alp", "spin0", "spin1", "spin2"
    mediator_mass: float | None = None  # GeV; the ALP mass for "alp"
    dm_mass: float | None = None  # GeV

    @property
    def spin(self) -> int | None:
        return int(self.framework[-1]) if self.framework.startswith("spin") else None

    @property
    def regime(self) -> str | None:
        """``offshell`` (M_Y < 2 m_chi), ``onshell`` or ``offshell_ps`` (M_Y beyond reach)."""
        if self.spin is None:
            return None
        # every spin-mediator benchmark has both masses (BENCHMARKS, custom_point)
        assert self.mediator_mass is not None and self.dm_mass is not None
        if self.mediator_mass < 2 * self.dm_mass:
            return "offshell"
        return "offshell_ps" if self.mediator_mass > 8000 else "onshell"

    def describe(self) -> str:
        if self.framework == "sm":
            return "SM pp -> Z(nu nubar) + jet"
        if self.framework == "alp":
            return f"ALP + jet (m_a = {self.mediator_mass:g} GeV, generated at {ALP_GENERATED_MASS} GeV)"
        return (f"spin-{self.spin} mediator M_Y = {self.mediator_mass:g} GeV, "
                f"m_chi = {self.dm_mass:g} GeV ({self.regime})")


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("sm", "sm"),
        Benchmark("alp", "alp", 1e-5, None),
        Benchmark("spin0_offshell", "spin0", M_Z, 300.0),
        Benchmark("spin0_onshell", "spin0", 1000.0, 10.0),
        Benchmark("spin0_offshell_ps", "spin0", 10000.0, 10.0),
        Benchmark("spin1_offshell", "spin1", M_Z, 300.0),
        Benchmark("spin1_onshell", "spin1", 1000.0, 10.0),
        Benchmark("spin1_offshell_ps", "spin1", 10000.0, 10.0),
        Benchmark("spin2_offshell", "spin2", M_Z, 300.0),
        Benchmark("spin2_onshell", "spin2", 1000.0, 10.0),
        Benchmark("spin2_offshell_ps", "spin2", 10000.0, 10.0),
    ]
}


def get_benchmark(name: str) -> Benchmark:
    """Look a benchmark up by name; an unknown name lists the valid ones."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ConfigError(
            f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)} "
            "or give --spin/--mediator-mass/--dm-mass for a point of your own"
        ) from None


def custom_point(spin: int, mediator_mass: float, dm_mass: float) -> Benchmark:
    """A user-defined (spin, M_Y, m_chi) point, validated."""
    if spin not in (0, 1, 2):
        raise ConfigError(f"--spin {spin}: the mediator spin must be 0, 1 or 2")
    for option, mass in (("--mediator-mass", mediator_mass), ("--dm-mass", dm_mass)):
        if not (math.isfinite(mass) and mass > 0):
            raise ConfigError(f"{option} {mass}: masses must be finite and positive (GeV)")
    if 2 * dm_mass >= 6500:
        raise ConfigError(f"--dm-mass {dm_mass:g}: 2 m_chi = {2 * dm_mass:g} GeV is beyond the reach of 14 TeV "
                          "monojets; give m_chi below 3250 GeV")
    name = f"spin{spin}_M{mediator_mass:g}_m{dm_mass:g}"
    return Benchmark(name, f"spin{spin}", float(mediator_mass), float(dm_mass))

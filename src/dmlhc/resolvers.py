"""OmegaConf resolvers of dmlhc's configs, registered when ``dmlhc`` is imported (before Hydra resolves a config).

``${dmlhc.per_background:VALUE,B}``: VALUE set for B = 50k background events per histogram, in proportion to
B (the default L2 penalty of ``conf/model/binary.yaml``).
"""

from __future__ import annotations

from omegaconf import OmegaConf

REFERENCE_BACKGROUND = 50_000  # the paper's B


def per_background(value: float, n_background: int) -> float:
    """``value`` (as set at B = 50k) scaled to ``n_background`` events per histogram."""
    return float(value) * float(n_background) / REFERENCE_BACKGROUND


def register() -> None:
    """Register the resolvers (again, harmlessly, on a second call)."""
    OmegaConf.register_new_resolver("dmlhc.per_background", per_background, replace=True)

"""The networks of the paper (Table 2): histogram DNN and CNN, and the event-level DNN.

Every network is built for an ``input_shape`` (the DataModule's: (n_pt, n_eta) for
histograms, (n_features,) for events) and maps a batch of that shape to logits of
shape (batch, n_outputs); the LightningModule applies the sigmoid/softmax inside its loss.

Two additions to Table 2, on by default (``standardise=False, skip=False`` is the
paper's network exactly):

- ``standardise``: a fixed per-bin standardisation (:class:`Standardise`) whose mean
  and standard deviation the DataModule measures once on a large draw of training
  histograms. Max-normalised SM-only and SM + signal histograms differ by ~S/B of a
  bin's content: without it the network sits at the constant prediction (loss ln 2)
  wherever the optimum AUC is below ~0.93.
- ``skip``: a linear path from the (standardised) inputs to the outputs, beside the
  hidden layers. The likelihood-ratio optimum is linear in the counts, so the
  network can reach it through this path at once and use the hidden layers for the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

SNR_FLOOR = 1e-3  # ParametrisedDNN: S/sqrt(B) below it (0 included) enters as this


def _dense_stack(n_inputs: int, depth: int, width: int, dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(n_inputs, width), nn.ReLU(), nn.Dropout(dropout)]
        n_inputs = width
    return nn.Sequential(*layers), n_inputs


class Standardise(nn.Module):
    """(x - mean) / std per input, with a fixed mean and std (buffers, saved in checkpoints).

    Not a batch statistic: :meth:`set_statistics` takes them from the DataModule
    (``EnsembleDataModule.input_statistics``) before training. Until then it is the identity.
    """

    # Buffers registered in __init__; torch's stubs type them as Tensor | Module.
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_inputs: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_inputs))
        self.register_buffer("std", torch.ones(n_inputs))

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Use ``mean`` and ``std`` (shape (n_inputs,), std > 0) from now on."""
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(f"input statistics of shape {tuple(mean.shape)} for a network of "
                             f"{self.mean.numel()} inputs: the binning of the data and the network differ")
        if not bool(torch.all(std > 0)):
            raise ValueError("input standard deviations must be positive")
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _standardiser(n_inputs: int, enabled: bool) -> nn.Module:
    return Standardise(n_inputs) if enabled else nn.Identity()


class HistogramDNN(nn.Module):
    """Histogram unrolled to n_pt * n_eta inputs; ``depth`` dense layers of ``width``, relu, dropout after each;
    optionally standardised inputs and a linear skip path (module docstring)."""

    def __init__(self, input_shape: Sequence[int], n_outputs: int = 1, depth: int = 3, width: int = 20,
                 dropout: float = 0.2, standardise: bool = True, skip: bool = True):
        super().__init__()
        if len(input_shape) != 2:
            raise ValueError(f"HistogramDNN takes (n_pt, n_eta) histograms, not inputs of shape {tuple(input_shape)}; "
                             "use architecture=event_dnn with model=event")
        n_inputs = math.prod(input_shape)
        self.standardise = _standardiser(n_inputs, standardise)
        self.body, width = _dense_stack(n_inputs, depth, width, dropout)
        self.head = nn.Linear(width, n_outputs)
        self.skip = nn.Linear(n_inputs, n_outputs) if skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.standardise(x.flatten(1))
        out = self.head(self.body(x))
        return out if self.skip is None else out + self.skip(x)


class ParametrisedDNN(nn.Module):
    """A HistogramDNN that is also told S/sqrt(B): one network for every S/sqrt(B) of a grid (``dmlhc.parametrised``).

    ``forward(x, snr)``: ``snr`` (a number or one value per histogram) enters as log(S/sqrt(B)), one more input
    beside the standardised histogram, for the hidden layers and the linear skip path alike. At small S/sqrt(B)
    the likelihood ratio's direction in the counts hardly depends on S/sqrt(B) (only its scale, to which an AUC
    is blind), so the skip path serves every point; the hidden layers, which see S/sqrt(B), bend the rest.
    """

    def __init__(self, input_shape: Sequence[int], n_outputs: int = 1, depth: int = 3, width: int = 20,
                 dropout: float = 0.2, standardise: bool = True, skip: bool = True):
        super().__init__()
        if len(input_shape) != 2:
            raise ValueError(f"ParametrisedDNN takes (n_pt, n_eta) histograms, not inputs of shape "
                             f"{tuple(input_shape)}")
        n_inputs = math.prod(input_shape)
        self.standardise = _standardiser(n_inputs, standardise)
        self.body, width = _dense_stack(n_inputs + 1, depth, width, dropout)
        self.head = nn.Linear(width, n_outputs)
        self.skip = nn.Linear(n_inputs + 1, n_outputs) if skip else None

    def forward(self, x: torch.Tensor, snr: torch.Tensor | float) -> torch.Tensor:
        x = self.standardise(x.flatten(1))
        snr = torch.as_tensor(snr, dtype=x.dtype, device=x.device)
        feature = torch.log(snr.clamp_min(SNR_FLOOR)).expand(len(x)).unsqueeze(1)
        x = torch.cat([x, feature], dim=1)
        out = self.head(self.body(x))
        return out if self.skip is None else out + self.skip(x)


class HistogramCNN(nn.Module):
    """``depth`` stages of Conv(3x3) + MaxPool(2), channels 32, 64, ... -> Flatten -> Dense(width) -> output;
    optionally standardised inputs and a linear skip path (module docstring).

    The paper's CNN is depth 2, width 20. A stage pools only while the map is at least 2 x 2.
    """

    def __init__(self, input_shape: Sequence[int], n_outputs: int = 1, depth: int = 2, channels: int = 32,
                 width: int = 20, dropout: float = 0.2, standardise: bool = True, skip: bool = True):
        super().__init__()
        if len(input_shape) != 2:
            raise ValueError(f"HistogramCNN takes (n_pt, n_eta) histograms, not inputs of shape {tuple(input_shape)}; "
                             "use architecture=event_dnn with model=event")
        n_pt, n_eta = input_shape
        self.standardise = _standardiser(n_pt * n_eta, standardise)
        self.skip = nn.Linear(n_pt * n_eta, n_outputs) if skip else None
        layers: list[nn.Module] = []
        n_in, size = 1, (n_pt, n_eta)
        for stage in range(depth):
            n_out = channels * 2**stage
            layers += [nn.Conv2d(n_in, n_out, 3, padding=1), nn.ReLU()]
            if min(size) >= 2:
                layers.append(nn.MaxPool2d(2))
                size = (size[0] // 2, size[1] // 2)
            n_in = n_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(n_in * size[0] * size[1], width), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(width, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = self.standardise(x.flatten(1))
        out = self.classifier(self.features(flat.view_as(x).unsqueeze(1)))
        return out if self.skip is None else out + self.skip(flat)


class EventDNN(nn.Module):
    """Event-by-event baseline: dense layers on per-event (pT, eta, phi)."""

    def __init__(self, input_shape: Sequence[int] = (3,), n_outputs: int = 1, depth: int = 3, width: int = 20,
                 dropout: float = 0.2):
        super().__init__()
        if len(input_shape) != 1:
            raise ValueError(f"EventDNN takes per-event features, not inputs of shape {tuple(input_shape)}; "
                             "use architecture=dnn or cnn with histogram tasks")
        self.body, width = _dense_stack(input_shape[0], depth, width, dropout)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

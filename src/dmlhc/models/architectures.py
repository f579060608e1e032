"""The networks of the paper (Table 2): histogram DNN and CNN, and the event-level DNN.

Every network maps a batch to logits of shape (batch, n_outputs); the
LightningModule applies the sigmoid/softmax inside its loss. Input shapes:
histograms (batch, n_pt, n_eta), events (batch, n_features).
"""

from __future__ import annotations

import torch
from torch import nn


def _dense_stack(n_inputs: int, depth: int, width: int, dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(n_inputs, width), nn.ReLU(), nn.Dropout(dropout)]
        n_inputs = width
    return nn.Sequential(*layers), n_inputs


def _standardiser(n_inputs: int, enabled: bool) -> nn.Module:
    """Per-bin standardisation of the inputs (batch statistics in training, running ones in evaluation).

    An affine map the first layer could learn, but learning it from max-normalised histograms, whose
    classes differ by ~S/B in a few bins, takes thousands of epochs (the paper trained 1500-2500).
    """
    return nn.BatchNorm1d(n_inputs, affine=False) if enabled else nn.Identity()


class HistogramDNN(nn.Module):
    """Histogram unrolled to n_pt * n_eta inputs; ``depth`` dense layers of ``width``, relu, dropout after each."""

    def __init__(self, n_pt: int, n_eta: int, n_outputs: int = 1, depth: int = 3, width: int = 20,
                 dropout: float = 0.2, standardise: bool = False):
        super().__init__()
        self.standardise = _standardiser(n_pt * n_eta, standardise)
        self.body, width = _dense_stack(n_pt * n_eta, depth, width, dropout)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.standardise(x.flatten(1))))


class HistogramCNN(nn.Module):
    """``depth`` stages of Conv(3x3) + MaxPool(2), channels 32, 64, ... -> Flatten -> Dense(width) -> output.

    The paper's CNN is depth 2, width 20. A stage pools only while the map is at least 2 x 2.
    """

    def __init__(self, n_pt: int, n_eta: int, n_outputs: int = 1, depth: int = 2, channels: int = 32,
                 width: int = 20, dropout: float = 0.2, standardise: bool = False):
        super().__init__()
        self.standardise = _standardiser(n_pt * n_eta, standardise)
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
        x = self.standardise(x.flatten(1)).view_as(x)
        return self.classifier(self.features(x.unsqueeze(1)))


class EventDNN(nn.Module):
    """Event-by-event baseline: dense layers on per-event (pT, eta, phi)."""

    def __init__(self, n_features: int = 3, n_outputs: int = 1, depth: int = 3, width: int = 20, dropout: float = 0.2):
        super().__init__()
        self.body, width = _dense_stack(n_features, depth, width, dropout)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

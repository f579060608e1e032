"""The networks of the paper (Table 2): histogram DNN and CNN, and the event-level DNN.

Every network maps a batch to logits of shape (batch, n_outputs); the
LightningModule applies the sigmoid/softmax inside its loss. Input shapes:
histograms (batch, n_pt, n_eta), events (batch, n_features).
"""

from __future__ import annotations

import torch
from torch import nn


def _dense_stack(n_inputs: int, hidden: list[int], dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_inputs, width), nn.ReLU(), nn.Dropout(dropout)]
        n_inputs = width
    return nn.Sequential(*layers), n_inputs


class HistogramDNN(nn.Module):
    """Histogram unrolled to n_pt * n_eta inputs; dense hidden layers, relu, dropout after each."""

    def __init__(self, n_pt: int, n_eta: int, n_outputs: int = 1, hidden: list[int] = (20, 20, 20),
                 dropout: float = 0.2):
        super().__init__()
        self.body, width = _dense_stack(n_pt * n_eta, list(hidden), dropout)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(1)))


class HistogramCNN(nn.Module):
    """Conv(3x3, 32) -> MaxPool(2) -> Conv(3x3, 64) -> MaxPool(2) -> Flatten -> Dense(20) -> output."""

    def __init__(self, n_pt: int, n_eta: int, n_outputs: int = 1, channels: list[int] = (32, 64),
                 dense: int = 20, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        n_in, size = 1, (n_pt, n_eta)
        for n_out in channels:
            if min(size) < 2:
                raise ValueError(f"binning {n_pt}x{n_eta} is too coarse for {len(channels)} pooling stages; "
                                 "use more bins or fewer architecture.channels")
            layers += [nn.Conv2d(n_in, n_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            n_in, size = n_out, (size[0] // 2, size[1] // 2)
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(n_in * size[0] * size[1], dense), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(dense, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.unsqueeze(1)))


class EventDNN(nn.Module):
    """Event-by-event baseline: dense layers on per-event (pT, eta, phi)."""

    def __init__(self, n_features: int = 3, n_outputs: int = 1, hidden: list[int] = (20, 20, 20),
                 dropout: float = 0.2):
        super().__init__()
        self.body, width = _dense_stack(n_features, list(hidden), dropout)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

"""Many histogram DNNs trained as one: parameters stacked along a leading network axis.

:class:`StackedDNN` holds N :class:`~dmlhc.models.architectures.HistogramDNN` networks of one shape
(each with its own weights, fixed input standardisation and dropout) and runs them with batched
matrix products, so a grid of small networks costs a few large products per step instead of
N small ones. Every network is independent: the loss of the stack is the sum of the networks'
losses, so each network's gradient is its own, and Adam(W)'s update is elementwise, so one
``torch.optim.AdamW`` over the stacked parameters is exactly one AdamW per network.

Inputs come as (G, H, n_inputs) with N = G * k: consecutive groups of k networks share one
input batch (k = 1 in training, where every network draws its own histograms; k = repeats
for a fixed validation or test set, which the repeats of a point share). The input
standardisation is folded into the first layer, x @ (W / std) + (b - (mean / std) @ W), so
networks with different statistics can share inputs, and the skip path rides in that layer
as one more output column.

In training the inputs can also come composed (:class:`ComposedInputs`): network i's histogram h
is row ``orders[i, h]`` of one background bank shared by every network plus row h of its
point's additions, divided by a normaliser. The first layer is linear, so it runs on the parts:
one product of the bank with every network's weights (a single large matrix product instead of
N thin batched ones), one per point for the additions, and the rows then gathered and scaled; the
N inputs themselves are never built (experiments/bench_composed.py times a step both ways).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from dmlhc.models.architectures import HistogramDNN, Standardise


@dataclass(frozen=True)
class ComposedInputs:
    """Inputs of n networks as parts (module docstring): network i's input h is
    ``(bank[orders[i, h]] + additions[p, h]) * scales[i, h]`` for the point p of the group holding i."""

    bank: torch.Tensor  # (H, C) background counts every network uses
    orders: torch.Tensor  # (n, H) int64: the bank row of each of network i's inputs
    additions: torch.Tensor  # (P, H, C) counts each point adds
    groups: tuple[tuple[int, slice], ...]  # (p, networks of point p): contiguous, in order, covering all n
    scales: torch.Tensor  # (n, H): 1 / each input's normaliser


class StackedDNN(nn.Module):
    """N HistogramDNNs of one shape as stacked parameters (module docstring); :meth:`network` gives one back."""

    # Buffers registered in __init__; torch's stubs type them as Tensor | Module.
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, nets: Sequence[HistogramDNN]):
        super().__init__()
        if not nets or not all(isinstance(net, HistogramDNN) for net in nets):
            raise ValueError("StackedDNN stacks HistogramDNN networks (architecture=dnn or paper_dnn); "
                             "train other architectures one at a time (without grid.snr)")
        first = nets[0]
        shapes = [[tuple(p.shape) for p in net.parameters()] for net in nets]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("the stacked networks differ in shape; a grid trains one architecture")
        self.dropout = next((m.p for m in first.body if isinstance(m, nn.Dropout)), 0.0)
        linears: list[list[nn.Linear]] = [[m for m in net.body if isinstance(m, nn.Linear)] + [net.head]
                                          for net in nets]
        # weights as (N, in, out) for x @ W, biases as (N, 1, out)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([layers[i].weight.detach().t() for layers in linears]).contiguous())
            for i in range(len(linears[0])))
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([layers[i].bias.detach()[None] for layers in linears]).contiguous())
            for i in range(len(linears[0])))
        self.has_skip = first.skip is not None
        if self.has_skip:
            skips = [cast(nn.Linear, net.skip) for net in nets]
            self.skip_weight = nn.Parameter(torch.stack([skip.weight.detach().t() for skip in skips]).contiguous())
            self.skip_bias = nn.Parameter(torch.stack([skip.bias.detach()[None] for skip in skips]).contiguous())
        n_inputs = self.weights[0].shape[1]
        mean = [n.standardise.mean if isinstance(n.standardise, Standardise) else torch.zeros(n_inputs) for n in nets]
        std = [n.standardise.std if isinstance(n.standardise, Standardise) else torch.ones(n_inputs) for n in nets]
        self.register_buffer("mean", torch.stack(mean).clone())
        self.register_buffer("std", torch.stack(std).clone())

    @property
    def n_networks(self) -> int:
        return self.weights[0].shape[0]

    def _first_layer(self, part: slice, columns: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight (n, out[+1], in) and bias (n, 1, out[+1]) of the first layer of networks ``part``, the
        standardisation folded in, the skip path as the last output; the weight's inputs ``columns`` only, if given
        (the bias holds every input's standardisation offset)."""
        weight, skip = _of(self.weights[0], part), (_of(self.skip_weight, part) if self.has_skip else None)
        bias = _of(self.biases[0], part)
        bias = torch.cat([bias, _of(self.skip_bias, part)], 2) if self.has_skip else bias
        scale = 1.0 / _of(self.std, part)
        shift = _of(self.mean, part) * scale  # (n, in): x @ (W * scale) - shift @ W is the standardised input's product
        if columns is not None:
            outside = shift.index_fill(1, columns, 0)  # inputs left out are 0, standardised to -shift: in the bias
            if bool(outside.any()):
                full = torch.cat([weight, skip], 2) if skip is not None else weight
                bias = bias - torch.bmm(outside.unsqueeze(1), full)
            scale, shift = scale.index_select(1, columns), shift.index_select(1, columns)
        prepared, offset = _FirstLayer.apply(weight, skip, scale, shift, columns)
        return prepared, bias - offset

    def forward(self, x: torch.Tensor | ComposedInputs, networks: slice = slice(None),
                columns: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (n, H) of the networks ``networks`` (default all) on inputs (G, H, ...) shared by consecutive
        groups of n / G of them, or on :class:`ComposedInputs` (one input set per network); with ``columns``, inputs
        (G, H, C) hold only those input bins, all others being 0 (the first layer then multiplies C rows instead of
        every bin's)."""
        weight, bias = self._first_layer(networks, columns)
        # activations as (n, features, H), the layout in which batched products of these shapes run fastest on a CPU
        first = self._composed(x, weight) if isinstance(x, ComposedInputs) else self._shared(x, weight)
        first = first + bias.transpose(1, 2)
        if self.has_skip:
            first, skip = first[:, :-1], first[:, -1:]
        h = self._dropout(F.relu(first))
        for layer in range(1, len(self.weights)):  # (n, out, in) x (n, in, H)
            h = torch.baddbmm(_of(self.biases[layer], networks).transpose(1, 2),
                              _of(self.weights[layer], networks).transpose(1, 2), h)
            if layer < len(self.weights) - 1:
                h = self._dropout(F.relu(h))
        logits = h
        return (logits + skip if self.has_skip else logits).squeeze(1)

    @staticmethod
    def _shared(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """First-layer products (n, out, H) of weights (n, out, in) with inputs (G, H, ...) shared by groups of n / G
        networks: the networks of a group stacked, one (k * out, in) x (in, H) product per group."""
        n, out, n_in = weight.shape
        groups, hist = x.shape[0], x.shape[1]
        if n % groups:
            raise ValueError(f"{groups} input groups for {n} networks: the networks must be a multiple of the groups")
        grouped = weight.reshape(groups, n // groups * out, n_in)
        return torch.bmm(grouped, x.reshape(groups, hist, n_in).transpose(1, 2)).view(n, out, hist)

    @staticmethod
    def _composed(x: ComposedInputs, weight: torch.Tensor) -> torch.Tensor:
        """First-layer products (n, out, H) of weights (n, out, in) with composed inputs: the bank times every
        network's weights in one product, each point's additions times its networks' weights, rows gathered by each
        network's order and scaled by its normalisers (the layer is linear, so the parts add)."""
        n, out, n_in = weight.shape
        hist = x.bank.shape[0]
        if x.orders.shape != (n, hist) or x.scales.shape != (n, hist):
            raise ValueError(f"composed inputs for {x.orders.shape[0]} networks given to {n}")
        on_bank = (weight.reshape(n * out, n_in) @ x.bank.t()).view(n, out, hist)
        ordered = on_bank.gather(2, x.orders.unsqueeze(1).expand(n, out, hist))
        parts = weight.split([part.stop - part.start for _, part in x.groups])  # split: one gradient copy, no sums
        added = torch.cat([(w.reshape(-1, n_in) @ x.additions[p].t()).view(-1, out, hist)
                           for (p, _), w in zip(x.groups, parts)])
        return (ordered + added) * x.scales.unsqueeze(1)

    def _dropout(self, h: torch.Tensor) -> torch.Tensor:
        """Dropout as F.dropout (in training: each unit kept with probability 1 - p, scaled by 1 / (1 - p)), with
        the mask from uniform variates: half the cost of F.dropout's Bernoulli draws on a CPU."""
        if not self.training or self.dropout == 0:
            return h
        return h * torch.rand_like(h).ge_(self.dropout).mul_(1 / (1 - self.dropout))

    def network_state(self, i: int, like: HistogramDNN) -> dict[str, torch.Tensor]:
        """The state dict of network ``i`` as a HistogramDNN like ``like`` (same shape) loads it."""
        state = {}
        linears = [name for name, m in like.named_modules() if isinstance(m, nn.Linear) and name != "skip"]
        for name, weight, bias in zip(linears, self.weights, self.biases):
            state[f"{name}.weight"], state[f"{name}.bias"] = weight[i].detach().t().clone(), bias[i, 0].detach().clone()
        if self.has_skip:
            state["skip.weight"], state["skip.bias"] = self.skip_weight[i].detach().t().clone(), \
                self.skip_bias[i, 0].detach().clone()
        if isinstance(like.standardise, Standardise):
            state["standardise.mean"], state["standardise.std"] = self.mean[i].clone(), self.std[i].clone()
        return state


def _of(stacked: torch.Tensor, networks: slice) -> torch.Tensor:
    """The networks ``networks`` of a stacked tensor; all of them without an indexing step (whose gradient would
    fill a zero tensor of the parameter's size and copy into it, on every training step)."""
    return stacked if networks == slice(None) else stacked[networks]


class _FirstLayer(torch.autograd.Function):
    """The first layer's weights (n, in, out) and skip weights (n, in, 1) or None on the inputs ``columns`` (all if
    None), scaled by ``scale`` (n, C), as (n, out + 1, C), and the standardisation's offset ``shift`` (n, C) times
    them, (n, 1, out + 1): one pass over the weights in each direction (autograd's chain of selections,
    concatenation, scaling and fold makes several, and its gradient of the fold runs ~20x slower on a CPU)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, skip: torch.Tensor | None, scale: torch.Tensor,
                shift: torch.Tensor, columns: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [weight, skip] if skip is not None else [weight]
        if columns is not None:
            parts = [p.index_select(1, columns) for p in parts]
        selected = torch.cat(parts, 2) if len(parts) > 1 else parts[0]  # (n, C, out + 1)
        ctx.save_for_backward(scale, shift, columns)
        ctx.shapes = (weight.shape, skip.shape if skip is not None else None)
        return (selected * scale.unsqueeze(2)).transpose(1, 2).contiguous(), torch.bmm(shift.unsqueeze(1), selected)

    @staticmethod
    def backward(ctx, prepared: torch.Tensor, offset: torch.Tensor):
        scale, shift, columns = ctx.saved_tensors
        weight_shape, skip_shape = ctx.shapes
        selected = torch.addcmul(prepared.transpose(1, 2) * scale.unsqueeze(2), shift.unsqueeze(2), offset)

        def on_all_inputs(part: torch.Tensor, shape: torch.Size) -> torch.Tensor:  # rows left out get no gradient
            return part.contiguous() if columns is None else part.new_zeros(shape).index_copy_(1, columns, part)

        weight, *skip = selected.split(weight_shape[2], dim=2)  # skip: [] without a skip path
        return (on_all_inputs(weight, weight_shape), on_all_inputs(skip[0], skip_shape) if skip else None,
                None, None, None)


def select_networks(model: StackedDNN, optimiser: torch.optim.Optimizer, keep: torch.Tensor,
                    make_optimiser: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]) -> torch.optim.Optimizer:
    """Keep only networks ``keep`` (indices) in ``model`` (in place) and return a new optimiser from
    ``make_optimiser`` over its parameters that carries each kept network's state of ``optimiser``."""
    state = [optimiser.state.get(p, {}) for p in model.parameters()]
    keep_networks(model, keep)
    new = make_optimiser(model.parameters())
    for param, saved in zip(model.parameters(), state):
        new.state[param] = {k: (v[keep].clone() if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in saved.items()}
    return new


def keep_networks(model: StackedDNN, keep: torch.Tensor) -> None:
    """Narrow ``model`` in place to the networks ``keep`` (indices): new parameters, no optimiser state."""
    for name, param in list(model.named_parameters()):
        _set_parameter(model, name, nn.Parameter(param.detach()[keep].clone()))
    model.mean, model.std = model.mean[keep].clone(), model.std[keep].clone()


def _set_parameter(module: nn.Module, name: str, value: nn.Parameter) -> None:
    """Replace the parameter at dotted ``name`` (``weights.0``, ``skip_weight``) by ``value``."""
    *path, last = name.split(".")
    for part in path:
        module = getattr(module, part)
    if isinstance(module, nn.ParameterList):
        module[int(last)] = value
    else:
        setattr(module, last, value)

"""The networks of the metadata paper (Sec. 3.2-3.3, Fig. 3): v-only, LTN, RTN and the
joint models, over an item's vector, its neighbours' vectors and (joint models) their
metadata vectors.

Inputs of `forward`: ``x`` ``[B, d]`` (Φ(x)), ``z`` ``[B, m, d]`` (Φ(z_i), nearest
first), ``ox`` ``[B, e]`` (π(o_x)) and ``oz`` ``[B, m, e]`` (π(o_z_i)); it returns label
logits ``[B, L]``. σ is a ReLU; RNNs are LSTMs with a linear activation (`LinearLSTM`).
"""

from __future__ import annotations

import torch
from torch import nn

#: Architectures and whether they read metadata vectors (joint models).
ARCHITECTURES = {
    "v_only": False, "ltn": False, "rtn": False, "ltn_vecs": True, "ltn_allvecs": True,
    "ltwin": True, "ltwin_rnn": True, "ltwin_2rnn": True, "lzip": True,
}  # fmt: skip


class LinearLSTM(nn.Module):
    """An LSTM whose cell input and output activations are the identity (the paper's
    "LSTM with linear activation"): ``c_t = f c_{t-1} + i (W x_t + U h_{t-1})``,
    ``h_t = o c_t``; returns the last ``h``."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.input = nn.Linear(input_size, 4 * hidden_size)
        self.recurrent = nn.Linear(hidden_size, 4 * hidden_size, bias=False)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        """``[B, T, input]`` -> ``[B, hidden]``."""
        b = sequence.shape[0]
        h = sequence.new_zeros(b, self.hidden_size)
        c = sequence.new_zeros(b, self.hidden_size)
        projected = self.input(sequence)
        for t in range(sequence.shape[1]):
            i, f, o, g = (projected[:, t] + self.recurrent(h)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * g
            h = torch.sigmoid(o) * c
        return h


def _dense(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    """A fully-connected layer with He (Kaiming) initialisation, as in the paper."""
    layer = nn.Linear(n_in, n_out, bias=bias)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class NeighbourhoodNetwork(nn.Module):
    """One of `ARCHITECTURES` over ``d``-dim vectors, ``e``-dim metadata, ``h`` hidden units
    and ``n_labels`` outputs (docs/models/neighbourhood.md maps each to its equation)."""

    def __init__(
        self, architecture: str, d: int, e: int, h: int, n_labels: int, dropout: float
    ) -> None:
        super().__init__()
        self.architecture = architecture
        self.dropout = nn.Dropout(dropout)
        a = architecture
        if a == "v_only":  # Eq. 8
            self.out = _dense(d, n_labels)
            return
        x_in = d + e if a in ("ltn_vecs", "ltn_allvecs") else d  # Eq. 14
        self.fx = _dense(x_in, h)  # v_x, Eq. 10
        if a in ("ltn", "ltn_vecs", "ltwin", "ltwin_rnn", "ltwin_2rnn", "lzip"):
            self.fz = _dense(d, h)  # v_z per neighbour, Eq. 11 (FC before an RNN)
        if a == "ltn_allvecs":
            self.fz = _dense(d + e, h, bias=False)  # Eq. 16
        if a == "rtn":
            self.rnn_z = LinearLSTM(d, h)  # Eq. 12
        if a in ("ltwin", "ltwin_rnn", "ltwin_2rnn", "lzip"):
            self.ux = _dense(e, h)  # u_x
            self.uz = _dense(e, h)  # u_z per neighbour
        if a in ("ltwin_rnn", "ltwin_2rnn"):
            self.rnn_z = LinearLSTM(h, h)
            self.rnn_o = LinearLSTM(h, h)
        if a in ("ltwin_2rnn", "lzip"):  # Eq. 18-19: the RNN's state is the output
            self.rnn_out = LinearLSTM(h, n_labels)
        else:
            parts = 4 if a in ("ltwin", "ltwin_rnn") else 2
            self.out = _dense(parts * h, n_labels)  # W_y (Eq. 9, 13, 15, 17)

    def forward(
        self,
        x: torch.Tensor,
        z: torch.Tensor,
        ox: torch.Tensor | None = None,
        oz: torch.Tensor | None = None,
    ) -> torch.Tensor:
        a, relu, drop = self.architecture, torch.relu, self.dropout
        if a == "v_only":
            return self.out(drop(x))
        if a in ("ltn_vecs", "ltn_allvecs"):
            vx = relu(self.fx(torch.cat([x, ox], dim=1)))
        else:
            vx = relu(self.fx(x))
        if a == "ltn_allvecs":
            vz = relu(self.fz(torch.cat([z, oz], dim=2))).amax(dim=1)
        elif a == "rtn":
            vz = self.rnn_z(z)
        elif a in ("ltwin_rnn", "ltwin_2rnn"):
            vz = self.rnn_z(relu(self.fz(z)))
        elif a != "lzip":
            vz = relu(self.fz(z)).amax(dim=1)
        if a in ("ltn", "rtn", "ltn_vecs", "ltn_allvecs"):
            return self.out(drop(torch.cat([vx, vz], dim=1)))
        ux = relu(self.ux(ox))
        per_neighbour = relu(self.uz(oz))
        if a == "lzip":  # (v_x, u_x, v_z1, u_z1, ..., v_zm, u_zm)
            vzs = relu(self.fz(z))
            pairs = torch.stack([vzs, per_neighbour], dim=2).flatten(1, 2)
            sequence = torch.cat([vx[:, None], ux[:, None], pairs], dim=1)
            return self.rnn_out(drop(sequence))
        uz = self.rnn_o(per_neighbour) if a != "ltwin" else per_neighbour.amax(dim=1)
        if a == "ltwin_2rnn":
            return self.rnn_out(drop(torch.stack([vx, vz, ux, uz], dim=1)))
        return self.out(drop(torch.cat([vx, vz, ux, uz], dim=1)))

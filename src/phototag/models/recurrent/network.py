"""The recurrent label decoders as torch modules: CNN-RNN (Wang et al. 2016) and JVSP
(joint visual-semantic propagation), their training loss and beam-search decoding.

Both read one encoder stage map ``[B, C, H, W]`` and predict a label sequence, one label
per step, over ``L + 1`` outputs: the ``L`` labels and an end token (index ``L``). The
input of step 1 is a start token (index ``L + 1``), of step t the label of step t - 1.
A network's ``step`` advances a batch of sequences by one label; `beam_search` and the
teacher-forced ``forward`` are written once on top of it. docs/models/recurrent.md maps
the paper's equations to this code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from phototag.evaluation.metrics import class_f1_score
from phototag.training import Task

#: Target index of padded steps (ignored by the loss).
IGNORE = -100


class StepState(NamedTuple):
    """What a sequence carries from one step to the next: the LSTM's hidden and cell
    states, and (JVSP's knowledge guidance) the sum of lambda_i h_i over the steps so
    far and their number."""

    hidden: torch.Tensor
    cell: torch.Tensor
    memory: torch.Tensor
    steps: torch.Tensor


class StepOutput(NamedTuple):
    """One step: scores over the labels and the end token ``[B, L + 1]``, the new state,
    and the attention over the map's regions ``[B, R]`` (None for CNN-RNN)."""

    logits: torch.Tensor
    state: StepState
    attention: torch.Tensor | None


class SequenceNetwork(nn.Module):
    """A label decoder over a stage map: ``context`` once per image, then ``step``."""

    n_labels: int

    @property
    def end(self) -> int:
        return self.n_labels

    @property
    def start(self) -> int:
        return self.n_labels + 1

    def context(self, maps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What every step reads of the image (tensors with the batch first)."""
        raise NotImplementedError

    def initial_state(self, context: tuple[torch.Tensor, ...]) -> StepState:
        raise NotImplementedError

    def step(
        self, context: tuple[torch.Tensor, ...], state: StepState, previous: torch.Tensor
    ) -> StepOutput:
        """Advance every sequence by one label, `previous` being the last one ``[B]``.

        The context has one row per image and the state one per sequence: ``B`` is the
        images times the sequences per image (beam search keeps several per image,
        rows of one image adjacent)."""
        raise NotImplementedError

    def initialise_labels(self, vectors: torch.Tensor, found: torch.Tensor) -> None:
        """Start the label embedding tables (JVSP's U_l and U_f) from word vectors
        ``[L, d]``: projected on their top principal directions when d > dim, padded
        with zeros when d < dim, scaled to the tables' initial norm; labels without a
        vector (`found` False) keep their random rows."""
        tables = [m for name, m in self.named_children() if name.endswith("embedding")]
        dim = tables[0].embedding_dim
        words = vectors[found].float()
        if len(words) == 0:
            return
        centred = words - words.mean(0)
        if words.shape[1] > dim:
            _, _, directions = torch.linalg.svd(centred, full_matrices=False)
            centred = centred @ directions[:dim].T
        rows = F.pad(centred, (0, dim - centred.shape[1]))
        with torch.no_grad():
            for table in tables:
                scale = table.weight.norm(dim=1).mean() / rows.norm(dim=1).mean().clamp(min=1e-12)
                table.weight[: self.n_labels][found] = rows * scale

    def forward(
        self, maps: torch.Tensor, inputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: the step scores ``[B, T, L + 1]`` given the true previous
        labels `inputs` ``[B, T]`` (start token first), and the attention ``[B, T, R]``."""
        context = self.context(maps)
        state = self.initial_state(context)
        logits, attentions = [], []
        for t in range(inputs.shape[1]):
            out = self.step(context, state, inputs[:, t])
            state = out.state
            logits.append(out.logits)
            if out.attention is not None:
                attentions.append(out.attention)
        attention = torch.stack(attentions, 1) if attentions else None
        return torch.stack(logits, 1), attention


def _per_sequence(per_image: torch.Tensor, rows: int) -> torch.Tensor:
    """Rows of one image repeated for each of its `rows / n` sequences."""
    width = rows // len(per_image)
    return per_image if width == 1 else per_image.repeat_interleave(width, 0)


def _zero_state(batch: int, hidden: int, like: torch.Tensor) -> StepState:
    zeros = like.new_zeros((batch, hidden))
    return StepState(zeros, zeros, zeros, like.new_zeros(batch))


class CNNRNN(SequenceNetwork):
    """CNN-RNN: an LSTM over label embeddings; its output and the image embedding are
    fused into the label-embedding space, and the scores are the fused vector's inner
    products with every label embedding (the embedding matrix is shared)."""

    def __init__(self, channels: int, n_labels: int, dim: int = 512, dropout: float = 0.5):
        super().__init__()
        self.n_labels = n_labels
        self.image = nn.Linear(channels, dim)
        self.label_embedding = nn.Embedding(n_labels + 2, dim)
        self.lstm = nn.LSTMCell(dim, dim)
        self.fuse_recurrent = nn.Linear(dim, dim)
        self.fuse_image = nn.Linear(dim, dim, bias=False)
        self.output_bias = nn.Parameter(torch.zeros(n_labels + 1))
        self.dropout = nn.Dropout(dropout)

    def context(self, maps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image = self.image(maps.mean(dim=(2, 3)))
        return image, self.fuse_image(image)

    def initial_state(self, context: tuple[torch.Tensor, ...]) -> StepState:
        return _zero_state(len(context[0]), self.lstm.hidden_size, context[0])

    def step(
        self, context: tuple[torch.Tensor, ...], state: StepState, previous: torch.Tensor
    ) -> StepOutput:
        hidden, cell = self.lstm(self.label_embedding(previous), (state.hidden, state.cell))
        image = _per_sequence(context[1], len(hidden))
        fused = F.relu(self.fuse_recurrent(self.dropout(hidden)) + image)
        logits = fused @ self.label_embedding.weight[: self.n_labels + 1].T + self.output_bias
        return StepOutput(logits, state._replace(hidden=hidden, cell=cell), None)


class JVSP(SequenceNetwork):
    """Joint visual-semantic propagation (Eq. 1-9).

    Parameters:
        channels: the stage map's channels; its H x W positions are the regions C(I),
            each projected to `dim`.
        n_labels: the vocabulary size L.
        dim: image features, tag embeddings and the LSTM's hidden state (the paper: 512;
            the LSTM's input X_t = [V_t, T_t] has 2 * dim).
        dropout: on U_ig V_t (Eq. 5) and on the LSTM output (Eq. 9).
        knowledge: add the knowledge guidance K_t (Eq. 2-3).
        visual_lstm: feed V_t into the LSTM at every step and into the scores (Eq. 8-9);
            False: a plain LSTM over T_t whose state starts from the pooled image.
    """

    def __init__(
        self,
        channels: int,
        n_labels: int,
        dim: int = 512,
        dropout: float = 0.5,
        knowledge: bool = True,
        visual_lstm: bool = True,
    ):
        super().__init__()
        self.n_labels, self.dim = n_labels, dim
        self.knowledge, self.visual_lstm = knowledge, visual_lstm
        self.regions = nn.Linear(channels, dim)
        self.label_embedding = nn.Embedding(n_labels + 2, dim)  # U_l
        self.refine_embedding = nn.Embedding(n_labels + 2, dim)  # U_f
        self.knowledge_projection = nn.Linear(dim, dim, bias=False)  # W_h
        self.visual_to_tag = nn.Linear(dim, dim)  # U_ig
        self.refine = nn.Linear(dim, dim, bias=False)  # W_gt
        self.lstm = nn.LSTMCell(2 * dim if visual_lstm else dim, dim)
        self.initial = None if visual_lstm else nn.Linear(dim, 2 * dim)
        self.output = nn.Linear(dim, n_labels + 1)  # W_s
        self.dropout = nn.Dropout(dropout)

    def context(self, maps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        regions = self.regions(maps.flatten(2).transpose(1, 2))  # [B, R, dim]
        return (regions,)

    def initial_state(self, context: tuple[torch.Tensor, ...]) -> StepState:
        regions = context[0]
        state = _zero_state(len(regions), self.dim, regions)
        if self.initial is None:
            return state
        hidden, cell = torch.tanh(self.initial(regions.mean(1))).chunk(2, dim=1)
        return state._replace(hidden=hidden, cell=cell)

    def step(
        self, context: tuple[torch.Tensor, ...], state: StepState, previous: torch.Tensor
    ) -> StepOutput:
        regions = context[0]
        guidance = self.label_embedding(previous)  # w_k (Eq. 1)
        if self.knowledge:  # g_t = w_k + K_t (Eq. 2-3); K_1 = 0
            mean = state.memory / state.steps.clamp(min=1).unsqueeze(1)
            guidance = guidance + self.knowledge_projection(mean)
        # V_t = Phi(C(I) (*) g_t) (Eq. 4): a softmax over the regions of their match
        # with the guidance, pooling the regions (each image's regions serve all of its
        # sequences: guidance [n, width, dim] against regions [n, R, dim])
        n, rows = len(regions), len(guidance)
        match = guidance.view(n, rows // n, self.dim) @ regions.transpose(1, 2)
        attention = (match / math.sqrt(self.dim)).softmax(dim=2)
        visual = (attention @ regions).view(rows, self.dim)
        attention = attention.view(rows, -1)
        tag = self.refine_embedding(previous)  # w_f (Eq. 1)
        refined = self.refine(torch.tanh(tag + self.dropout(self.visual_to_tag(visual))))
        # T_t = Phi(w_f (*) g^_t) (Eq. 6), scaled by dim so that its entries average 1
        text = (tag * refined).softmax(dim=1) * self.dim
        if self.visual_lstm:  # X_t = [V_t, T_t] (Eq. 7-8); y_t = W_s (h_t + V_t) (Eq. 9)
            hidden, cell = self.lstm(torch.cat([visual, text], 1), (state.hidden, state.cell))
            logits = self.output(self.dropout(hidden) + visual)
        else:
            hidden, cell = self.lstm(text, (state.hidden, state.cell))
            logits = self.output(self.dropout(hidden))
        confidence = logits.detach().softmax(dim=1).amax(dim=1)  # lambda_t
        state = StepState(
            hidden, cell, state.memory + confidence.unsqueeze(1) * hidden, state.steps + 1
        )
        return StepOutput(logits, state, attention)


def diversity_loss(attention: torch.Tensor, valid: torch.Tensor, beta: float) -> torch.Tensor:
    """L_V (Eq. 10): the overlap of adjacent steps' attention, counting only weights of at
    least `beta`, averaged over the adjacent pairs of valid steps (`valid` ``[B, T]``)."""
    high = attention * (attention >= beta)
    overlap = (high[:, 1:] * high[:, :-1]).sum(dim=2)  # [B, T - 1]
    pairs = valid[:, 1:] & valid[:, :-1]
    return (overlap * pairs).sum() / pairs.sum().clamp(min=1)


def sequence_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    attention: torch.Tensor | None,
    alpha: float,
    beta: float,
) -> torch.Tensor:
    """Eq. 11: the cross-entropy of every valid step, plus `alpha` times L_V."""
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
    if attention is not None and alpha > 0:
        loss = loss + alpha * diversity_loss(attention, targets != IGNORE, beta)
    return loss


class SequenceTask(Task):
    """Training by teacher forcing on ordered label lists with the loss of Eq. 11.

    The validation value is the held-out images' per-label F1 (C-F1) of the `steps`
    labels greedy decoding chooses (higher is better): the cross-entropy of teacher
    forcing stops falling after a few epochs, while the decoded labels keep improving.
    """

    def __init__(
        self,
        end: int,
        start: int,
        alpha: float = 0.0,
        beta: float = 0.01,
        steps: int = 5,
        stop_at_end: bool = False,
    ) -> None:
        self.end, self.start, self.alpha, self.beta = end, start, alpha, beta
        self.steps, self.stop_at_end = steps, stop_at_end

    def collate(self, items: list[tuple[torch.Tensor, list[int]]]) -> tuple[torch.Tensor, ...]:
        maps = torch.stack([m for m, _ in items])
        inputs, targets = label_sequences([labels for _, labels in items], self.end, self.start)
        return maps, inputs, targets

    def training_step(self, module: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        maps, inputs, targets = batch
        logits, attention = module(maps, inputs)
        return sequence_loss(logits, targets, attention, self.alpha, self.beta)

    def validation_value(self, module: nn.Module, batches: Iterable[Any]) -> float:
        decoded, true = [], []
        for maps, _, targets in batches:
            chosen = beam_search(
                module, maps, beam=1, steps=self.steps, stop_at_end=self.stop_at_end
            )
            decoded.append(chosen.label_sets.cpu())
            true.append(_target_sets(targets.cpu(), self.end))
        return class_f1_score(torch.cat(true).numpy(), torch.cat(decoded).numpy())


class Decoded(NamedTuple):
    """`beam_search`'s result: the label sets ``[N, L]`` (bool), each label's score (its
    highest probability over the chosen sequence's steps) ``[N, L]``, and the labels in
    the order they were chosen (-1 after the last)."""

    label_sets: torch.Tensor
    scores: torch.Tensor
    sequences: torch.Tensor


@torch.no_grad()
def beam_search(
    network: SequenceNetwork, maps: torch.Tensor, *, beam: int, steps: int, stop_at_end: bool
) -> Decoded:
    """Decode a batch of maps with a beam of `beam` sequences per image, never repeating
    a label. With `stop_at_end` a sequence ends at the end token (or after `steps`
    labels); otherwise the end token is never chosen and every sequence has `steps`
    labels (top-k). The best sequence by total log-probability wins."""
    n, labels = len(maps), network.n_labels
    steps = min(steps, labels)
    device = maps.device
    context = network.context(maps)  # one row per image: every step shares it
    state = network.initial_state(context)
    # the first step has one sequence per image; from the second, `beam` of them
    previous = torch.full((n,), network.start, dtype=torch.long, device=device)
    score = torch.zeros(n, device=device)
    used = torch.zeros((n, labels + 1), dtype=torch.bool, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    best_probability = torch.zeros((n, labels), device=device)
    sequences = torch.full((n, steps), -1, dtype=torch.long, device=device)
    image = torch.arange(n, device=device).unsqueeze(1)  # image indices, [n, 1]
    for t in range(steps):
        width = len(score) // n
        out = network.step(context, state, previous)
        log_probability = out.logits.log_softmax(dim=1)
        probability = log_probability[:, :labels].exp()
        log_probability = log_probability.masked_fill(used, -math.inf)
        if not stop_at_end:
            log_probability[:, labels] = -math.inf
        # a finished sequence only continues with the end token, at no cost
        log_probability[finished] = -math.inf
        log_probability[finished, labels] = 0.0
        total = (score.unsqueeze(1) + log_probability).view(n, width * (labels + 1))
        top, index = total.topk(min(beam, total.shape[1]), dim=1)
        origin = (index // (labels + 1) + image * width).view(-1)
        token = (index % (labels + 1)).view(-1)
        score = top.view(-1)
        state = StepState(*(part[origin] for part in out.state))
        was_finished = finished[origin]
        fresh = ~was_finished
        best_probability = best_probability[origin]
        best_probability[fresh] = torch.maximum(best_probability[fresh], probability[origin][fresh])
        used = used[origin].scatter(1, token.unsqueeze(1), True)
        finished = was_finished | (token == labels)
        sequences = sequences[origin]
        sequences[:, t] = torch.where(finished, -1, token)
        previous = token
        if bool(finished.all()):
            break
    width = len(score) // n
    winner = score.view(n, width).argmax(dim=1) + image[:, 0] * width
    chosen = sequences[winner]
    label_sets = torch.zeros((n, labels + 1), dtype=torch.bool, device=device)
    label_sets.scatter_(1, torch.where(chosen >= 0, chosen, labels), True)
    return Decoded(label_sets[:, :labels], best_probability[winner], chosen)


def label_sequences(
    label_rows: Sequence[Sequence[int]], end: int, start: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing inputs and targets ``[B, T]`` of ordered label lists: the inputs
    start with `start`, the targets end with `end`; shorter lists are padded (inputs with
    `end`, targets with `IGNORE`)."""
    length = max(len(row) for row in label_rows) + 1
    inputs = torch.full((len(label_rows), length), end, dtype=torch.long)
    targets = torch.full((len(label_rows), length), IGNORE, dtype=torch.long)
    for i, row in enumerate(label_rows):
        sequence = torch.as_tensor(list(row), dtype=torch.long)
        inputs[i, 0] = start
        inputs[i, 1 : len(row) + 1] = sequence
        targets[i, : len(row)] = sequence
        targets[i, len(row)] = end
    return inputs, targets


def _target_sets(targets: torch.Tensor, n_labels: int) -> torch.Tensor:
    """The binary label sets ``[B, n_labels]`` of teacher-forcing targets."""
    sets = torch.zeros(len(targets), n_labels + 1, dtype=torch.bool)
    sets.scatter_(1, targets.clamp(0, n_labels).masked_fill(targets == IGNORE, n_labels), True)
    return sets[:, :n_labels]

"""Real-CE's official recognizer pair, rebuilt layer for layer so its released state dicts load unchanged.

    CHN: ``CRNN(3, 256, 7935, 32)`` of ``basicsr/metrics/crnn/crnn.py`` (VGG-style CNN, two BiLSTMs, CTC over
         blank + the 7,934-character benchmark alphabet), weights ``scene_base_CRNN.pth``.
    ENG: ``CRNN(32, 1, 37, 256)`` of ``basicsr/metrics/crnn/crnn_eng.py`` (the classic CRNN, 0-9a-z), ``crnn.pth``.

Module names match the originals (``cnn.conv0``, ``cnn.batchnorm2``, ``rnn.0.rnn``, ``rnn.0.embedding`` ...).
"""
from __future__ import annotations

import torch
from torch import nn

# (kernel, padding) per conv; channels are the same in both networks
_CHANNELS = (64, 128, 256, 256, 512, 512, 512)
_BATCHNORM = (2, 4, 6)


class BiLSTM(nn.Module):
    """(T, B, n_in) -> (T, B, n_out): a bidirectional LSTM and a linear map."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int):
        super().__init__()
        self.rnn = nn.LSTM(n_in, n_hidden, bidirectional=True)
        self.embedding = nn.Linear(n_hidden * 2, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        t, b, c = out.shape
        return self.embedding(out.reshape(t * b, c)).reshape(t, b, -1)


def _cnn(in_ch: int, kernels: tuple[int, ...], pads: tuple[int, ...], pools: dict[int, nn.Module]) -> nn.Sequential:
    cnn = nn.Sequential()
    for i, out_ch in enumerate(_CHANNELS):
        cnn.add_module(f"conv{i}", nn.Conv2d(in_ch if i == 0 else _CHANNELS[i - 1], out_ch, kernels[i], 1, pads[i]))
        if i in _BATCHNORM:
            cnn.add_module(f"batchnorm{i}", nn.BatchNorm2d(out_ch))
        cnn.add_module(f"relu{i}", nn.ReLU(True))
        if i in pools:
            cnn.add_module(f"pooling{list(pools).index(i)}", pools[i])
    return cnn


class CRNNChinese(nn.Module):
    """Real-CE's Chinese CRNN: (B, 3, 32, W) BGR in [0, 255] -> (W/4 + 2, B, n_class) logits."""

    def __init__(self, n_class: int, n_hidden: int = 256, height: int = 32, in_ch: int = 3):
        super().__init__()
        pools = {0: nn.MaxPool2d((2, 2), (1, 2), (1, 0)), 1: nn.MaxPool2d((2, 2), (1, 2), (1, 0)),
                 3: nn.MaxPool2d((2, 2), (2, 1), (0, 1)), 5: nn.MaxPool2d((2, 2), (2, 1), (0, 1))}
        self.cnn = _cnn(in_ch, (3,) * 7, (1,) * 7, pools)
        self.avg_pooling = nn.AvgPool2d((height // 4, 1), (height // 4, 1))
        self.rnn = nn.Sequential(BiLSTM(512, n_hidden, n_hidden), BiLSTM(n_hidden, n_hidden, n_class))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.avg_pooling(self.cnn(x)).squeeze(2).permute(2, 0, 1)  # (T, B, 512)
        return self.rnn(conv)


class CRNNEnglish(nn.Module):
    """Real-CE's English CRNN: (B, 1, 32, W) gray in [0, 1] -> (W/4 + 1, B, 37) logits."""

    def __init__(self, n_class: int = 37, n_hidden: int = 256, in_ch: int = 1):
        super().__init__()
        pools = {0: nn.MaxPool2d(2, 2), 1: nn.MaxPool2d(2, 2),
                 3: nn.MaxPool2d((2, 2), (2, 1), (0, 1)), 5: nn.MaxPool2d((2, 2), (2, 1), (0, 1))}
        self.cnn = _cnn(in_ch, (3, 3, 3, 3, 3, 3, 2), (1, 1, 1, 1, 1, 1, 0), pools)
        self.rnn = nn.Sequential(BiLSTM(512, n_hidden, n_hidden), BiLSTM(n_hidden, n_hidden, n_class))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.cnn(x)
        assert conv.shape[2] == 1, f"feature height must be 1, got {tuple(conv.shape)}"
        return self.rnn(conv.squeeze(2).permute(2, 0, 1))  # (T, B, 512) -> (T, B, 37)


def ctc_greedy(logits: torch.Tensor, alphabet: list[str]) -> list[str]:
    """Real-CE's ``get_string_crnn``: per step argmax, index 0 is the blank, repeats collapse until a blank."""
    out = []
    for seq in logits.permute(1, 0, 2).argmax(-1).tolist():  # (B, T)
        text, last = "", ""
        for i in seq:
            if alphabet[i] != last:
                if i != 0:
                    text += alphabet[i]
                    last = alphabet[i]
                else:
                    last = ""
        out.append(text)
    return out


def load_state(model: nn.Module, state) -> nn.Module:
    """Load a released checkpoint: a state dict (or a list holding one), ``module.`` prefixes dropped."""
    if isinstance(state, list):
        state = state[0]
    model.load_state_dict({k.replace("module.", ""): v for k, v in state.items()})
    return model

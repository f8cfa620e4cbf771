"""PyTorch eager: ``nn.Sequential`` of ``nn.Linear`` + ``nn.ReLU`` under ``torch.inference_mode``."""

from __future__ import annotations

from ._torch import model_and_input

NAME = "PyTorch eager"
GROUP = "peer"
SAME_PARAMS = True


def build(p):
    torch, model, x = model_and_input(p)

    def call():
        with torch.inference_mode():
            return model(x).numpy()

    return call

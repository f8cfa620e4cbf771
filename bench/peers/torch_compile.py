"""``torch.compile`` (default mode, Inductor on CPU) of the eager model, under inference mode."""

from __future__ import annotations

from ._torch import model_and_input

NAME = "torch.compile"
GROUP = "peer"
SAME_PARAMS = True


def build(p):
    torch, model, x = model_and_input(p)
    compiled = torch.compile(model)

    def call():
        with torch.inference_mode():
            return compiled(x).numpy()

    return call

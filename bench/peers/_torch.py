"""The PyTorch model shared by the eager and compiled rows: ``nn.Linear`` + relu, N times."""

from __future__ import annotations

from . import Unavailable

SMALL_FLOPS = 10**7


def model_and_input(p):
    """The model and input; at the small size, one intra-op thread (see below)."""
    try:
        import torch
    except ImportError as err:
        raise Unavailable(f"torch not installed ({err})") from err

    # At the small size (a few hundred kflop a call) PyTorch's OpenMP pool gains
    # nothing, and on a loaded 2-core machine its spinning threads stall 2-4 ms a
    # call (measured: 2.3 ms with 2 threads against 0.13 ms with 1). A PyTorch user
    # would run such a model on one thread; larger sizes keep the default.
    if not hasattr(model_and_input, "default_threads"):
        model_and_input.default_threads = torch.get_num_threads()
    torch.set_num_threads(1 if p.flops < SMALL_FLOPS else model_and_input.default_threads)

    layers = []
    for k, b in zip(p.kernel, p.bias, strict=True):
        linear = torch.nn.Linear(p.F, p.F)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(k.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers).eval()
    return torch, model, torch.from_numpy(p.x.copy())

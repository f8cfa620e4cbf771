"""``composed-lifts generate``: greedy tokens from a Hugging Face folder of a registered family."""

from __future__ import annotations

import argparse
import json

import numpy as np

from ._devices import add_devices_flag, devices_mesh


def _ids(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected token ids like 1,2,3, got {text!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError(f"expected at least one token id, got {text!r}")
    return ids


def register(commands) -> None:
    p = commands.add_parser(
        "generate",
        help="greedy tokens from a Hugging Face model folder (token ids in and out)",
        description=(
            "Load FOLDER (config.json and model.safetensors or a sharded index, as written by "
            "save_pretrained) into the scanned model, then decode greedily with the per-layer "
            "KV cache. Sequences stop at the config's eos_token_id (padded with it) unless "
            "--ignore-eos."
        ),
    )
    p.add_argument("folder", metavar="FOLDER", help="a save_pretrained folder")
    p.add_argument(
        "--prompt-ids",
        type=_ids,
        action="append",
        required=True,
        metavar="IDS",
        help="comma-separated token ids, e.g. 1,2,3; repeat for a batch (same lengths)",
    )
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens to generate (16)")
    p.add_argument("--unrolled", action="store_true", help="unroll the layers instead of a scan")
    p.add_argument("--ignore-eos", action="store_true", help="do not stop at eos_token_id")
    p.add_argument("--format", choices=("text", "json"), default="text", help="stdout format")
    p.add_argument(
        "--force",
        action="store_true",
        help="load even when the params (estimated from config.json) exceed the memory available",
    )
    add_devices_flag(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from .. import models
    from ..arguments import check_integer
    from ..errors import ArgumentRangeError, InputShapeError, ModelTooLargeError, UnevenBatchError

    mesh = None
    if args.devices is not None:  # first: on CPU, JAX makes its devices when it starts
        mesh = devices_mesh(check_integer("--devices", args.devices, minimum=1))
    check_integer("--max-new-tokens", args.max_new_tokens, minimum=1)
    lengths = sorted({len(ids) for ids in args.prompt_ids})
    if len(lengths) > 1:
        raise InputShapeError(
            "--prompt-ids",
            f"lengths {lengths}",
            "run the prompts separately",
            expected="the same length for every prompt of one batch",
        )
    try:
        model, params = models.from_hf(args.folder, scan_layers=not args.unrolled, force=args.force)
    except ModelTooLargeError as err:
        raise ModelTooLargeError(err.what, err.need, err.available, "--force") from None
    eos = None if args.ignore_eos else model.config.eos_token_id
    prompt = np.asarray(args.prompt_ids)
    if mesh is not None and len(prompt) % args.devices:
        raise UnevenBatchError(len(prompt), "--devices", args.devices)
    try:
        tokens = models.generate(
            model, params, prompt, args.max_new_tokens, eos_token_id=eos, mesh=mesh
        )
    except ArgumentRangeError as err:  # the Python argument's check, in the flag's words
        if err.argument != "max_new_tokens":
            raise
        raise ArgumentRangeError("--max-new-tokens", err.expected, err.seen, err.fix) from None
    if args.format == "json":
        print(json.dumps({"prompt_ids": prompt.tolist(), "generated_ids": tokens.tolist()}))
    else:
        for row in tokens:
            print(",".join(map(str, row.tolist())))
    return 0

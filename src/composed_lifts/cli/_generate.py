"""``composed-lifts generate``: text or token ids from a Hugging Face folder of a registered family.

One prompt streams its text as it is generated (flushed per token); at the end,
as llama.cpp does, the prompt (prefill) and generated (decode) tokens per second
and the first call's compile time go to stderr. ``--format json`` prints ids,
text, stop reasons and timings for every row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._devices import add_devices_flag, devices_mesh

# argument names of models.generate_with_details -> the flags that set them
_FLAGS = {
    "prompt_ids": "--prompt-ids",
    "max_new_tokens": "--max-new-tokens",
    "temperature": "--temperature",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "min_p": "--min-p",
    "repetition_penalty": "--repetition-penalty",
    "seed": "--seed",
    "stop": "--stop",
    "do_sample": "--do-sample",
}


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
        allow_abbrev=False,  # --prompt is not an abbreviation of --prompt-ids
        help="text or token ids from a Hugging Face model folder",
        description=(
            "Load FOLDER (config.json and model.safetensors or a sharded index, as written by "
            "save_pretrained; tokenizer.json for text) and generate with the KV cache: greedy, "
            "or sampled with the folder's generation_config.json and the flags below. Rows stop "
            "at the eos ids of config.json / generation_config.json (then pad) unless "
            "--ignore-eos, at a --stop string, or after --max-new-tokens."
        ),
    )
    p.add_argument("folder", metavar="FOLDER", help="a save_pretrained folder")
    p.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help="a text prompt (needs FOLDER/tokenizer.json); repeat for a batch of any lengths",
    )
    p.add_argument(
        "--prompt-ids",
        type=_ids,
        action="append",
        metavar="IDS",
        help="comma-separated token ids, e.g. 1,2,3; repeat for a batch of any lengths",
    )
    p.add_argument("--chat", action="store_true", help="apply the tokenizer's chat template")
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens to generate (16)")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="compute dtype (default: the folder's own)",
    )
    sampling = p.add_mutually_exclusive_group()
    sampling.add_argument(
        "--do-sample", dest="do_sample", action="store_true", default=None, help="sample"
    )
    sampling.add_argument(
        "--greedy", dest="do_sample", action="store_false", help="argmax (the default)"
    )
    p.add_argument("--temperature", type=float, help="0 for greedy; implies --do-sample")
    p.add_argument("--top-k", type=int, help="keep the k best tokens (0: off)")
    p.add_argument("--top-p", type=float, help="nucleus: keep this much probability, in (0, 1]")
    p.add_argument("--min-p", type=float, help="drop tokens below this fraction of the best")
    p.add_argument("--repetition-penalty", type=float, help="transformers' (1.0: off)")
    p.add_argument("--seed", type=int, help="sampling seed (0)")
    p.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="stop a row at this text"
    )
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


def _prompts(args, tokenizer):
    from ..errors import ArgumentTypeError

    if (args.prompt is None) == (args.prompt_ids is None):
        raise ArgumentTypeError(
            "generate", "given --prompt TEXT or --prompt-ids IDS (one of them)", "both or neither"
        )
    if args.prompt_ids is not None:
        if args.chat:
            raise ArgumentTypeError("--chat", "used with --prompt TEXT", "--prompt-ids")
        return args.prompt_ids
    if args.chat:
        return [
            tokenizer.apply_chat_template([{"role": "user", "content": text}])
            for text in args.prompt
        ]
    return [tokenizer.encode(text) for text in args.prompt]


def _tokenizer(args):
    from ..errors import InputFileError
    from ..models import Tokenizer

    folder = Path(args.folder)
    if not (folder / "tokenizer.json").is_file():
        if args.prompt is not None or args.chat or args.stop:
            flag = "--prompt" if args.prompt is not None else "--chat" if args.chat else "--stop"
            raise InputFileError(
                flag,
                f"needs the folder's tokenizer.json, and {str(folder / 'tokenizer.json')!r} "
                "does not exist",
                "save the tokenizer into the folder (tokenizer.save_pretrained) or use "
                "--prompt-ids",
            )
        return None
    tokenizer = Tokenizer.from_folder(folder)
    if args.chat and tokenizer.chat_template is None:
        raise InputFileError(
            "--chat",
            f"needs a chat template, and folder {str(folder)!r} has none (neither "
            "chat_template.jinja nor tokenizer_config.json's chat_template)",
            "drop --chat to use the prompt as it is",
        )
    return tokenizer


class _Stream:
    """Prints one row's text as its tokens arrive (whole characters only), flushed."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.shown = tokenizer, [], ""

    def __call__(self, new) -> None:
        self.ids.append(int(new[0]))
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):  # a character split over tokens: wait for the rest
            return
        sys.stdout.write(text[len(self.shown) :])
        sys.stdout.flush()
        self.shown = text

    def finish(self, text: str) -> None:
        sys.stdout.write(text[len(self.shown) :] + "\n")
        sys.stdout.flush()


def run(args) -> int:
    from .. import models
    from ..arguments import check_integer
    from ..errors import ModelTooLargeError, UnevenBatchError

    mesh = None
    if args.devices is not None:  # first: on CPU, JAX makes its devices when it starts
        mesh = devices_mesh(check_integer("--devices", args.devices, minimum=1))
    check_integer("--max-new-tokens", args.max_new_tokens, minimum=1)
    tokenizer = _tokenizer(args)
    prompts = _prompts(args, tokenizer)
    if mesh is not None and len(prompts) % args.devices:
        raise UnevenBatchError(len(prompts), "--devices", args.devices)
    try:
        model, params = models.from_hf(
            args.folder, scan_layers=not args.unrolled, dtype=args.dtype, force=args.force
        )
    except ModelTooLargeError as err:
        raise ModelTooLargeError(err.what, err.need, err.available, "--force") from None
    text_out = tokenizer is not None and args.prompt is not None
    streaming = args.format == "text" and len(prompts) == 1 and text_out
    stream = _Stream(tokenizer) if streaming else None
    result = models.generate_with_details(
        model,
        params,
        prompts,
        args.max_new_tokens,
        eos_token_id=None if args.ignore_eos else model.config.eos_token_id,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        generation_config=models.read_generation_config(args.folder),
        stop=args.stop,
        tokenizer=tokenizer,
        on_tokens=stream,
        mesh=mesh,
        names=_FLAGS,
    )
    timings = {
        "prompt_tokens": result.prompt_tokens,
        "prefill_s": result.prefill_s,
        "prefill_tokens_per_s": result.prefill_tokens_per_s,
        "decode_tokens": result.decode_tokens,
        "decode_s": result.decode_s,
        "decode_tokens_per_s": result.decode_tokens_per_s,
        "compile_s": result.compile_s,
    }
    if args.format == "json":
        rows = [
            {
                "prompt_ids": list(map(int, prompt)),
                "generated_ids": ids,
                "text": None if result.text is None else result.text[i],
                "stop_reason": result.stop_reasons[i],
            }
            for i, (prompt, ids) in enumerate(zip(prompts, result.new_ids))
        ]
        print(json.dumps({"rows": rows, "timings": timings}))
        return 0
    if stream is not None and result.text is not None:
        stream.finish(result.text[0])
    elif result.text is not None and text_out:
        for text in result.text:
            print(text)
    else:
        for row in result.tokens:
            print(",".join(map(str, row.tolist())))
    print(
        f"prompt: {result.prompt_tokens} tokens in {result.prefill_s * 1e3:.1f} ms "
        f"({result.prefill_tokens_per_s:.1f} tokens/s); generated: {result.decode_tokens} tokens "
        f"in {result.decode_s * 1e3:.1f} ms ({result.decode_tokens_per_s:.1f} tokens/s); "
        f"compile (first call): {result.compile_s:.2f} s",
        file=sys.stderr,
    )
    return 0

"""``composed-lifts finetune``: full or LoRA fine-tuning of a Hugging Face folder, resumable.

OUT receives ``run.json`` (the run's settings, written first), ``log.jsonl`` (one line per
step), ``train_state.safetensors`` (every ``--save-every`` steps and at the end) and, at
the end, the result: a Hugging Face folder (``config.json``, ``model.safetensors``, the
tokenizer files of FOLDER) or, with ``--lora-rank``, a PEFT folder.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

from ._devices import add_devices_flag, devices_mesh

_REMAT = ("none", "full", "dots", "dots_no_batch")
_STATE, _RUN, _LOG = "train_state.safetensors", "run.json", "log.jsonl"
# Settings that must be equal on --resume (the devices and remat policy may change)
_SAME_ON_RESUME = (
    "model",
    "data",
    "steps",
    "batch",
    "seq_len",
    "accumulate",
    "lr",
    "warmup",
    "weight_decay",
    "max_grad_norm",
    "seed",
    "lora_rank",
    "lora_alpha",
    "lora_targets",
)


def register(commands) -> None:
    p = commands.add_parser(
        "finetune",
        help="fine-tune a Hugging Face GPT-2 or Llama folder (full or LoRA), resumable",
        description=(
            "Train FOLDER (a save_pretrained folder) on the token ids of --data with AdamW, "
            "a linear warm-up and cosine decay, as torch.optim.AdamW and transformers' "
            "get_cosine_schedule_with_warmup. OUT then holds a Hugging Face folder (or a PEFT "
            "folder with --lora-rank), the last train state and a log of the losses."
        ),
    )
    p.add_argument("folder", metavar="FOLDER", help="a save_pretrained folder")
    p.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help=".npy of token ids (1-D, or 2-D: one document per row), or .jsonl of "
        '{"ids": [...]} or {"text": ...} (FOLDER/tokenizer.json)',
    )
    p.add_argument("--steps", type=int, required=True, metavar="N", help="optimizer steps")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder")
    p.add_argument(
        "--lora-rank",
        type=int,
        default=None,
        metavar="R",
        help="train LoRA adapters of rank R (base frozen) instead of every param",
    )
    p.add_argument(
        "--lora-alpha",
        type=float,
        default=None,
        metavar="A",
        help="LoRA alpha (default: R, a scaling of 1)",
    )
    p.add_argument(
        "--lora-targets",
        default="q_proj,v_proj",
        metavar="NAMES",
        help="comma-separated projections (q_proj,v_proj; GPT-2: c_attn,c_proj ...)",
    )
    p.add_argument(
        "--batch", type=int, default=4, metavar="B", help="sequences per micro-batch (4)"
    )
    p.add_argument(
        "--seq-len",
        type=int,
        default=None,
        metavar="T",
        help="tokens per sequence (default: min(256, the model's positions))",
    )
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (1e-4)")
    p.add_argument("--warmup", type=int, default=0, metavar="W", help="warm-up steps (0)")
    p.add_argument(
        "--accumulate",
        type=int,
        default=1,
        metavar="K",
        help="micro-batches per step (gradient accumulation; 1)",
    )
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (0.01)")
    p.add_argument(
        "--max-grad-norm",
        type=float,
        default=1.0,
        help="clip the gradient norm as torch's clip_grad_norm_ (1.0; 0: off)",
    )
    p.add_argument("--remat", choices=_REMAT, default="none", help="remat policy per layer")
    p.add_argument(
        "--save-every",
        type=int,
        default=0,
        metavar="K",
        help="save the train state every K steps (0: only at the end)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run saved in OUT")
    p.add_argument("--seed", type=int, default=0, help="data order and LoRA init seed (0)")
    add_devices_flag(p)
    p.set_defaults(handler=run)


class _StopFlag:
    """SIGTERM: finish the current step, save, exit 130."""

    def __init__(self):
        self.raised = False

    def __call__(self, signum, frame):
        self.raised = True

    def __bool__(self):
        return self.raised


def _settings(args, folder: Path) -> dict:
    return {
        "model": str(folder.resolve()),
        "data": str(Path(args.data).resolve()),
        "steps": args.steps,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "accumulate": args.accumulate,
        "lr": args.lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "max_grad_norm": args.max_grad_norm,
        "seed": args.seed,
        "lora_rank": args.lora_rank,
        "lora_alpha": args.lora_alpha,
        "lora_targets": args.lora_targets if args.lora_rank else None,
        "remat": args.remat,
        "devices": args.devices,
    }


def _check_resume(out: Path, settings: dict, resume: bool) -> None:
    from ..errors import ArgumentRangeError, TrainStateMismatchError

    run_file = out / _RUN
    if not resume:
        if run_file.exists():
            raise ArgumentRangeError(
                "--out",
                "a folder without a run (or pass --resume)",
                f"{str(out)!r}, which holds {_RUN}",
                "pass --resume to continue it",
            )
        return
    if not (out / _STATE).exists():
        raise ArgumentRangeError(
            "--resume",
            f"an --out folder holding {_STATE}",
            repr(str(out)),
            "run without --resume to start",
        )
    saved = json.loads(run_file.read_text(encoding="utf-8"))
    for key in _SAME_ON_RESUME:
        if saved.get(key) != settings[key]:
            raise TrainStateMismatchError(key, saved.get(key), settings[key])


def _write_json(path: Path, value) -> None:
    from ..files import atomic_writer

    with atomic_writer(path, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def _trim_log(path: Path, steps: int) -> None:
    """Keep the log's lines of steps 1..steps (a resumed run writes the rest again)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln)["step"] <= steps]
    from ..files import atomic_writer

    with atomic_writer(path, "w") as f:
        f.write("".join(ln + "\n" for ln in kept))


def run(args) -> int:
    stop = _StopFlag()  # from the start: a SIGTERM at any time ends the run after a whole step
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return _run(args, stop)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args, stop) -> int:
    from .. import Remat, models
    from ..arguments import check_integer
    from ..errors import ArgumentRangeError
    from ..train import (
        LoraOptions,
        TrainOptions,
        load_train_state,
        make_trainer,
        read_documents,
        to_peft,
        token_windows,
        train_loop,
    )

    mesh = None
    if args.devices is not None:  # first: on CPU, JAX makes its devices when it starts
        mesh = devices_mesh(check_integer("--devices", args.devices, minimum=1))
    for flag, value, low in (
        ("--steps", args.steps, 1),
        ("--batch", args.batch, 1),
        ("--accumulate", args.accumulate, 1),
        ("--warmup", args.warmup, 0),
        ("--save-every", args.save_every, 0),
        ("--seed", args.seed, 0),
    ):
        check_integer(flag, value, minimum=low)
    if args.lora_rank is not None:
        check_integer("--lora-rank", args.lora_rank, minimum=1)
    folder, out = Path(args.folder), Path(args.out)
    model, params = models.from_hf(folder)
    positions = model.config.max_positions
    if args.seq_len is None:
        args.seq_len = min(256, positions)
    check_integer("--seq-len", args.seq_len, minimum=2)
    if args.seq_len > positions:
        raise ArgumentRangeError(
            "--seq-len",
            f"<= {positions} (the model's positions)",
            args.seq_len,
            f"pass --seq-len {positions} or less",
        )
    rows = args.batch * args.accumulate
    if mesh is not None and rows % (args.devices * args.accumulate):
        raise ArgumentRangeError(
            "--batch",
            f"a multiple of --devices={args.devices}",
            args.batch,
            "each device takes an equal share of every micro-batch",
        )
    settings = _settings(args, folder)
    _check_resume(out, settings, args.resume)
    documents = read_documents(args.data, tokenizer=folder / "tokenizer.json")
    data = token_windows(
        documents,
        args.seq_len,
        model.config.vocab_size,
        seed=args.seed,
        where=f"--data {args.data!r}",
    )
    options = TrainOptions(
        steps=args.steps,
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        weight_decay=args.weight_decay,
        accumulate=args.accumulate,
        max_grad_norm=args.max_grad_norm or None,
        remat=Remat(args.remat),
    )
    lora = None
    if args.lora_rank is not None:
        targets = tuple(t.strip() for t in args.lora_targets.split(",") if t.strip())
        lora = LoraOptions(rank=args.lora_rank, alpha=args.lora_alpha, targets=targets)
    trainer = make_trainer(model, options, lora=lora, mesh=mesh)
    state = trainer.init(params, rng=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    position = 0
    if args.resume:
        state, position = load_train_state(out / _STATE, state)
        _trim_log(out / _LOG, int(state.step))
    else:
        _write_json(out / _RUN, settings)
        (out / _LOG).unlink(missing_ok=True)
    result = _train(trainer, state, data, rows, position, out, args, stop, train_loop)
    if result.stopped:
        print(
            f"stopped by SIGTERM after step {int(result.state.step)}; state saved in "
            f"{out / _STATE}; continue with --resume"
        )
        return 130
    if lora is not None:
        to_peft(result.state.params, lora, params, model.config, out, base=str(folder.resolve()))
        what = "PEFT adapter folder"
    else:
        models.to_hf(result.state.params, model.config, out)
        for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
            if (folder / name).is_file():
                shutil.copyfile(folder / name, out / name)
        what = "Hugging Face folder"
    print(f"trained {args.steps} steps; {out} holds the {what} and {_STATE}")
    return 0


def _train(trainer, state, data, rows, position, out: Path, args, stop, train_loop):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from ._console import Console

    log = open(out / _LOG, "a", encoding="utf-8")
    start = int(state.step)
    progress = Progress(
        TextColumn("finetune"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[rate]} tokens/s"),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    clock: dict[str, float] = {"tokens": 0.0}

    def on_step(step: int, metrics: dict) -> None:
        log.write(json.dumps({"step": step, **metrics}) + "\n")
        log.flush()
        now = time.perf_counter()
        if "t" not in clock:  # the first step compiles: rates from the second on
            clock["t"] = now
            rate = "-"
        else:
            clock["tokens"] += metrics["tokens"] + rows  # the targets, plus the rows' first tokens
            rate = f"{clock['tokens'] / max(now - clock['t'], 1e-9):,.0f}"
        progress.update(task, completed=step, loss=f"{metrics['loss']:.4f}", rate=rate)

    with progress, log:
        task = progress.add_task("steps", total=args.steps, completed=start, loss="-", rate="-")
        return train_loop(
            trainer,
            state,
            data,
            rows=rows,
            position=position,
            checkpoint=out / _STATE,
            save_every=args.save_every,
            on_step=on_step,
            stop_requested=lambda: bool(stop),
        )

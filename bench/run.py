"""The benchmark runner: every form and every metric, round-robin in one process.

    .venv/bin/python bench/run.py            # the full run (about 15 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # a smoke run, under 2 minutes
    .venv/bin/python bench/run.py --only latency,train

It prints a progress bar and the tables, and writes ``results.json``,
``results.md`` and the PNG plots to ``bench/results/`` (``--quick`` writes to
``bench/results/quick/``, which is not committed). Only ratios between rows of
one run mean anything: see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _reexec_without_openblas_overrides(argv) -> None:
    """Benchmark NumPy with the kernel OpenBLAS picks itself (see bench/README.md).

    On some processors these machines set OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE,
    which slow a current NumPy. For this benchmark process only, both are unset
    together (never in tests or CI); the kernel then in use is recorded via
    threadpoolctl, and every form's output is checked against a float64 reference.
    """
    if any(v in os.environ for v in _OPENBLAS_VARS) and "--keep-openblas-env" not in argv:
        env = {k: v for k, v in os.environ.items() if k not in _OPENBLAS_VARS}
        env["BENCH_UNSET_OPENBLAS"] = ",".join(
            f"{k}={os.environ[k]}" for k in _OPENBLAS_VARS if k in os.environ
        )
        os.execve(sys.executable, [sys.executable, __file__, *argv], env)


SECTIONS = ("latency", "compile", "train", "cli")

_QUICK_SKIP = "skipped in --quick"
QUICK = {
    "latency_rounds": 2,
    "sample_s": 0.01,
    "depths": [1, 4, 64, 1024],
    "unrolled_depths": [1, 4, 16],
    "compile_reps": 1,
    "train_depths": [16],
    "train_rounds": 2,
    "cli_rounds": 1,
    # (size or "*", form) -> why it is left out
    "skip": {
        ("*", "torch_compile"): _QUICK_SKIP + " (compiling takes 20 s a size)",
        ("medium", "seed_recipe"): _QUICK_SKIP + " (1-3 s a call)",
        ("large", "seed_recipe"): _QUICK_SKIP + " (1-3 s a call)",
    },
}
FULL = {
    "latency_rounds": 10,
    "sample_s": 0.03,
    "depths": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
    "unrolled_depths": [1, 2, 4, 8, 16, 32, 64, 128],
    "compile_reps": 3,
    "train_depths": [1, 4, 16, 64],
    "train_rounds": 5,
    "cli_rounds": 4,
    "skip": {},
}


def _blas_info() -> list:
    try:
        import threadpoolctl

        return [
            {k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for d in threadpoolctl.threadpool_info()
        ]
    except ImportError:
        return [{"note": "threadpoolctl not installed"}]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description="composed-lifts benchmarks (see bench/README.md)")
    ap.add_argument("--quick", action="store_true", help="a smoke run in under 2 minutes")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"sections, from {SECTIONS}")
    ap.add_argument("--out", type=pathlib.Path, default=None, help="results directory")
    ap.add_argument("--sizes", default="small,medium,large", help="latency sizes to run")
    ap.add_argument(
        "--keep-openblas-env",
        action="store_true",
        help="do not unset OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for this run",
    )
    args = ap.parse_args(argv)
    _reexec_without_openblas_overrides(argv)

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    import report
    from _timing import machine_info

    cfg = QUICK if args.quick else FULL
    out_dir = args.out or (HERE / "results" / "quick" if args.quick else HERE / "results")
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]

    import numpy  # noqa: F401  (loaded before reading which BLAS it runs)

    console = Console()
    info = machine_info()
    info["blas"] = _blas_info()
    info["openblas_env_unset_for_this_run"] = os.environ.get("BENCH_UNSET_OPENBLAS")
    info["mode"] = "quick" if args.quick else "full"
    results = {"machine": info, "config": {k: v for k, v in cfg.items() if k != "skip"}}
    results["config"]["skipped"] = [f"{s}/{f}: {why}" for (s, f), why in cfg["skip"].items()]
    start = time.perf_counter()

    import compile_time
    import latency

    if set(sizes) - set(latency.SIZES):
        ap.error(
            f"unknown sizes {sorted(set(sizes) - set(latency.SIZES))}; "
            f"choose from {tuple(latency.SIZES)}"
        )

    steps = {
        "latency": len(sizes) * (len(latency.FORMS) + cfg["latency_rounds"]),
        "compile": compile_time.plan_size(
            cfg["depths"], cfg["unrolled_depths"], cfg["compile_reps"]
        ),
        "train": 2 * len(cfg["train_depths"]) * (3 + cfg["train_rounds"]),
        "cli": 4 * cfg["cli_rounds"],
    }
    with Progress(
        TextColumn("[bold]{task.description:<52}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("starting", total=sum(steps[s] for s in sections))

        def tick(msg):
            progress.update(task, description=msg[:52], advance=1)

        section_s = results["section_s"] = {}

        def timed(name, fn):
            t0 = time.perf_counter()
            results[name] = fn()
            section_s[name] = time.perf_counter() - t0

        if "latency" in sections:

            def all_sizes():
                return {
                    size: latency.measure_size(
                        size,
                        rounds=cfg["latency_rounds"],
                        sample_s=cfg["sample_s"],
                        skip={f: why for (s, f), why in cfg["skip"].items() if s in ("*", size)},
                        tick=tick,
                    )
                    for size in sizes
                }

            timed("latency", all_sizes)
        if "compile" in sections:
            timed(
                "compile",
                lambda: compile_time.measure(
                    cfg["depths"], cfg["unrolled_depths"], reps=cfg["compile_reps"], tick=tick
                ),
            )
        if "train" in sections:
            import train_memory

            timed(
                "train",
                lambda: train_memory.measure(
                    cfg["train_depths"],
                    rounds=cfg["train_rounds"],
                    sample_s=cfg["sample_s"] * 3,
                    tick=tick,
                ),
            )
        if "cli" in sections:
            import cli_start

            timed(
                "cli",
                lambda: cli_start.measure(
                    rounds=cfg["cli_rounds"], warm_all=not args.quick, tick=tick
                ),
            )
    results["wall_s"] = time.perf_counter() - start
    results["targets"] = report.targets(results)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    md = report.markdown(results)
    (out_dir / "results.md").write_text(md)
    import plots

    written = plots.write_all(results, out_dir)
    report.print_tables(results, console)
    console.print(
        f"wrote {out_dir / 'results.json'}, results.md, "
        f"{', '.join(p.name for p in written)} in {results['wall_s']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

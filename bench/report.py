"""Turn bench results into the targets of issue 5, a markdown report and rich tables."""

from __future__ import annotations

__all__ = ["markdown", "print_tables", "targets"]

PEER_GROUPS = ("jax", "peer")


def _med(rows, name):
    row = rows.get(name, {})
    return row.get("median_s")


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} us"


def _target(name, value, bound, *, below: bool, detail: str) -> dict:
    met = None if value is None else (value <= bound if below else value >= bound)
    return {
        "target": name,
        "value": value,
        "bound": bound,
        "sense": "<=" if below else ">=",
        "met": met,
        "detail": detail,
    }


def _fastest_peer(rows):
    peers = [
        (r["median_s"], k)
        for k, r in rows.items()
        if r.get("group") in PEER_GROUPS and "median_s" in r
    ]
    return min(peers) if peers else (None, None)


def targets(res: dict) -> list[dict]:
    """Each target of issue 5 (and issue 2's 300x) as a ratio measured in this run."""
    out = []
    lat = res.get("latency", {})
    for ours in ("ours_linen", "ours_nnx", "ours_linen_eigen"):
        for size in ("medium", "large"):
            rows = lat.get(size, {}).get("rows", {})
            best, who = _fastest_peer(rows)
            mine = _med(rows, ours)
            value = mine / best if mine and best else None
            out.append(
                _target(
                    f"{ours} at {size} vs fastest peer",
                    value,
                    1.0,
                    below=True,
                    detail=f"fastest peer: {rows.get(who, {}).get('name')}",
                )
            )
        large = lat.get("large", {})
        mine = _med(large.get("rows", {}), ours)
        frac = large["limit_s"] / mine if mine and "limit_s" in large else None
        detail = (
            f"peak {large['peak_gflops']:.0f} GFLOP/s ({large['peak_by']}), same rounds"
            if "peak_gflops" in large
            else "no peak measured"
        )
        out.append(
            _target(
                f"{ours} at large: fraction of matmul peak", frac, 0.9, below=False, detail=detail
            )
        )
        rows = lat.get("medium", {}).get("rows", {})
        torch_best = min(
            (t for t in (_med(rows, "torch_eager"), _med(rows, "torch_compile")) if t), default=None
        )
        mine = _med(rows, ours)
        out.append(
            _target(
                f"{ours} at medium vs best PyTorch",
                mine / torch_best if mine and torch_best else None,
                1.0,
                below=True,
                detail="",
            )
        )
        rows = lat.get("small", {}).get("rows", {})
        mine, base = _med(rows, ours), _med(rows, "jax_scan")
        out.append(
            _target(
                f"{ours} at small vs hand-written lax.scan",
                mine / base if mine and base else None,
                1.2,
                below=True,
                detail="",
            )
        )
    comp = res.get("compile", {})
    for form in ("ours_linen", "ours_nnx", "jax_scan"):
        by_n = comp.get(form, {}).get("by_n", {})
        hi = max((int(n) for n in by_n), default=None)
        value = None
        if hi and "4" in by_n:
            value = by_n[str(hi)]["total"]["median_s"] / by_n["4"]["total"]["median_s"]
        out.append(
            _target(
                f"compile time {form}: N={hi} / N=4",
                value,
                1.3,
                below=True,
                detail="trace + lower + XLA compile",
            )
        )
    mlp = res.get("train", {}).get("mlp4x", {}).get("by_policy", {})
    if mlp:
        n = str(max(int(k) for k in mlp["NONE"]))
        none, full = mlp["NONE"][n], mlp["FULL"][n]
        out.append(
            _target(
                f"remat FULL on MLP 4x at N={n}: scratch cut (grad)",
                none["grad_temp_bytes"] / full["grad_temp_bytes"],
                3.0,
                below=False,
                detail=f"whole SGD step scratch cut: "
                f"{none['step_temp_bytes'] / full['step_temp_bytes']:.2f}x",
            )
        )
        out.append(
            _target(
                f"remat FULL on MLP 4x at N={n}: step time cost",
                full["step"]["median_s"] / none["step"]["median_s"],
                1.35,
                below=True,
                detail="",
            )
        )
    cli = res.get("cli", {}).get("rows", {})
    if cli:
        base = cli["bare_imports"]["median_s"]
        recipe = cli["bare_recipe"]["median_s"]
        for key in ("cli", "cli_cached"):
            out.append(
                _target(
                    f"{cli[key]['name']} / bare imports",
                    cli[key]["median_s"] / base,
                    1.1,
                    below=True,
                    detail=f"vs the bare script that also runs the recipe: "
                    f"{cli[key]['median_s'] / recipe:.2f}x",
                )
            )
    rows = lat.get("small", {}).get("rows", {})
    slow, fast = _med(rows, "seed_recipe"), _med(rows, "ours_forward")
    out.append(
        _target(
            "composed_lifts_forward repeated call vs seed recipe (small)",
            slow / fast if slow and fast else None,
            300.0,
            below=False,
            detail="new seed each call, warm",
        )
    )
    return out


def _target_rows(res):
    for t in res["targets"]:
        v = "-" if t["value"] is None else f"{t['value']:.3g}"
        met = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        yield [t["target"], v, f"{t['sense']} {t['bound']:g}", met, t["detail"]]


def _latency_rows(res):
    lat = res.get("latency", {})
    sizes = list(lat)
    names = list(next(iter(lat.values()))["rows"]) if lat else []
    for name in names:
        cells = []
        label = None
        for size in sizes:
            row = lat[size]["rows"][name]
            label = row["name"]
            if "median_s" not in row:
                cells.append(f"skipped: {row.get('skipped', '-')}" if size == sizes[0] else "-")
                continue
            base = _med(lat[size]["rows"], "jax_scan")
            cell = f"{_fmt_s(row['median_s'])} / {_fmt_s(row['min_s'])}"
            if "gflops" in row:
                cell += f" ({row['gflops']:.0f} GFLOP/s)"
            elif row.get("group") != "limit":
                cell += f" ({row['median_s'] / base:.2f}x)"
            cells.append(cell)
        yield [label, *cells]
    if lat and all("limit_s" in d for d in lat.values()):
        yield [
            "**matmul-peak limit** (flops / best matmul rate)",
            *[_fmt_s(lat[s]["limit_s"]) for s in sizes],
        ]


def _table(header, rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines


def markdown(res: dict) -> str:
    m = res["machine"]
    v = m["versions"]
    lines = [
        "# composed-lifts benchmark results",
        "",
        f"- date: {m['date']} ({m['mode']} run, {res['wall_s']:.0f} s)",
        f"- machine: {m['nproc']} cores, {m['cpu']}; {m['platform']}; Python {m['python']}",
        "- libraries: " + ", ".join(f"{k} {x}" for k, x in v.items() if x),
        f"- BLAS: {m.get('blas')}; OPENBLAS env unset for this run: "
        f"{m.get('openblas_env_unset_for_this_run') or 'no (not set)'}",
        f"- {m['note']}.",
        "",
        "## Targets (ratios measured in this run)",
        "",
        *_table(["target", "measured", "bound", "", "detail"], _target_rows(res)),
    ]
    if "latency" in res:
        sizes = [f"{k} B={d['B']} N={d['N']} F={d['F']}" for k, d in res["latency"].items()]
        lines += [
            "",
            "## Forward latency: median / min (median relative to hand-written lax.scan)",
            "",
            *_table(["form", *sizes], _latency_rows(res)),
        ]
    if "compile" in res:
        comp = res["compile"]
        depths = sorted({int(n) for f in comp.values() for n in f["by_n"]})
        rows = []
        for f in comp.values():
            cells = [
                _fmt_s(f["by_n"][str(n)]["total"]["median_s"]) if str(n) in f["by_n"] else "-"
                for n in depths
            ]
            rows.append(
                [f["name"] + ("" if "skipped" not in f else f" (skipped: {f['skipped']})"), *cells]
            )
        lines += [
            "",
            "## Compile time (trace + lower + XLA compile, median) vs N, B=64 F=256",
            "",
            *_table(["form", *[f"N={n}" for n in depths]], rows),
        ]
    if "train" in res:
        lines += [
            "",
            "## Training step vs N (B=64, F=256): grad scratch MB / step scratch MB / step time",
            "",
        ]
        for block in res["train"].values():
            pol = block["by_policy"]
            depths = sorted(int(n) for n in pol["NONE"])
            rows = []
            for p, by_n in pol.items():
                rows.append(
                    [
                        p,
                        *[
                            f"{by_n[str(n)]['grad_temp_bytes'] / 1e6:.1f} / "
                            f"{by_n[str(n)]['step_temp_bytes'] / 1e6:.1f} / "
                            f"{_fmt_s(by_n[str(n)]['step']['median_s'])}"
                            for n in depths
                        ],
                    ]
                )
            lines += [
                f"### {block['name']}",
                "",
                *_table(["remat", *[f"N={n}" for n in depths]], rows),
                "",
            ]
    if "cli" in res:
        rows = [
            [r["name"], _fmt_s(r["median_s"]), _fmt_s(r["min_s"])]
            for r in res["cli"]["rows"].values()
        ]
        when = res["cli"].get("measured_at")
        lines += [
            "",
            "## Process start to result" + (f" (re-measured alone at {when})" if when else ""),
            "",
            *_table(["process", "median", "min"], rows),
        ]
    return "\n".join(lines) + "\n"


def print_tables(res: dict, console) -> None:
    from rich.table import Table

    if "latency" in res:
        t = Table(title="forward latency: median / min (x hand-written lax.scan)")
        t.add_column("form")
        for k, d in res["latency"].items():
            t.add_column(f"{k} B={d['B']} N={d['N']} F={d['F']}", justify="right")
        for row in _latency_rows(res):
            t.add_row(*row)
        console.print(t)
    t = Table(title="targets (ratios in this run)")
    for col in ("target", "measured", "bound", "", "detail"):
        t.add_column(col)
    for row in _target_rows(res):
        style = "green" if row[3] == "met" else "red" if row[3] == "NOT met" else None
        t.add_row(*row, style=style)
    console.print(t)


if __name__ == "__main__":  # re-render results.md (and the targets) from a saved results.json
    import json
    import pathlib
    import sys

    src = pathlib.Path(
        sys.argv[1]
        if len(sys.argv) > 1
        else pathlib.Path(__file__).parent / "results" / "results.json"
    )
    saved = json.loads(src.read_text())
    saved["targets"] = targets(saved)
    src.write_text(json.dumps(saved, indent=2) + "\n")
    (src.parent / "results.md").write_text(markdown(saved))
    print(src.parent / "results.md")

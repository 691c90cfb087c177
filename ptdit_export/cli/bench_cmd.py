"""`ptdit-export bench`: latency and peak memory of a denoiser step, PT-DiT vs dense, by token count."""

from __future__ import annotations

import json
from pathlib import Path

import click

RESULTS_NAME = "benchmarks_efficiency.json"


def _ints(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError as err:
        raise click.BadParameter(f"{value!r}: use comma-separated integers such as 256,512,1024") from err


@click.command()
@click.option(
    "--model", default="small", show_default=True, help="Preset or config JSON (its width is kept)."
)
@click.option(
    "--layers", type=int, default=None, help="PT-DiT depth [default: 1 on the CPU, the preset's on CUDA]."
)
@click.option(
    "--resolutions",
    default="256,512,768,1024,1536,2048",
    show_default=True,
    help="Image sides in pixels, each with the paper's window.",
)
@click.option("--video-resolution", default=256, show_default=True, help="Video side in pixels.")
@click.option(
    "--video-frames",
    default="4,16,64",
    show_default=True,
    help="Latent frame counts of the video points (multiples of 4; '' for none).",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    type=click.Choice(["onnxruntime", "eager"]),
    help="Repeat for several [default: both on the CPU, eager on CUDA].",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", default=1, show_default=True, help="Intra-op threads (the machine is shared).")
@click.option("--warmup", default=1, show_default=True, help="Untimed runs per model and backend.")
@click.option("--repeats", default=2, show_default=True, help="Timed interleaved runs (median reported).")
@click.option("--batch", default=1, show_default=True, help="Latents per step.")
@click.option("--text-len", default=200, show_default=True, help="Caption tokens.")
@click.option(
    "--max-memory-gb",
    type=float,
    default=None,
    help="Skip runs predicted above this peak [default: 8 on the CPU, 90% of the GPU on CUDA].",
)
@click.option(
    "--max-gflops",
    type=float,
    default=None,
    help="Skip runs above this analytic cost, 0 for no cap [default: 2000 on the CPU, none on CUDA].",
)
@click.option(
    "--peak-tflops", type=float, default=None, help="CUDA: bf16 dense peak for MFU [default: by name]."
)
@click.option("--seed", default=0, show_default=True, help="Random weights and inputs.")
@click.option(
    "--cache-dir", type=click.Path(file_okay=False), default=None, help="Keep exported graphs here for reuse."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="bench-efficiency",
    show_default=True,
    help=f"Folder for {RESULTS_NAME} and the plots.",
)
@click.option(
    "--doc",
    type=click.Path(dir_okay=False),
    default=None,
    help="Markdown file whose generated section to rewrite.",
)
@click.option(
    "--from-json",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Render tables and plots from saved results instead of measuring.",
)
def bench(**opts) -> None:
    """Time and peak memory of one denoiser step for PT-DiT and two dense baselines (equal width
    and depth; equal parameters) over token counts 256..16,384, with ONNX Runtime (exported
    portable fp32 graph) and PyTorch eager on the CPU, or bf16 eager with MFU on a GPU.

    Writes the results JSON and two plots into --out and, with --doc, the tables into the document.
    """
    from ptdit_export.bench import report as bench_report
    from ptdit_export.bench.run import run_sweep
    from ptdit_export.bench.sweep import BenchSettings

    out = Path(opts["out"])
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS_NAME
    if opts["from_json"]:
        results = json.loads(Path(opts["from_json"]).read_text())
    else:
        cpu = opts["device"] == "cpu"
        max_gflops = opts["max_gflops"] if opts["max_gflops"] is not None else (2000.0 if cpu else 0)
        try:
            settings = BenchSettings(
                model=opts["model"],
                layers=opts["layers"],
                resolutions=_ints(opts["resolutions"]),
                video_resolution=opts["video_resolution"],
                video_frames=_ints(opts["video_frames"]),
                backends=tuple(opts["backends"]) or (("onnxruntime", "eager") if cpu else ("eager",)),
                device=opts["device"],
                threads=opts["threads"],
                warmup=opts["warmup"],
                repeats=opts["repeats"],
                batch=opts["batch"],
                text_len=opts["text_len"],
                max_memory_gb=opts["max_memory_gb"]
                if opts["max_memory_gb"] is not None
                else (8.0 if cpu else None),
                max_gflops=max_gflops or None,
                peak_tflops=opts["peak_tflops"],
                seed=opts["seed"],
            )
        except ValueError as err:
            raise click.ClickException(str(err)) from err

        def save(partial: dict) -> None:  # after every point, so an interrupted sweep keeps its data
            results_path.write_text(json.dumps(partial, indent=1))

        from ptdit_export.bench.load import load_average, load_report

        before = load_average()
        click.echo(load_report("before", settings.threads, before))
        results = run_sweep(settings, opts["cache_dir"], on_point=save)
        after = load_average()
        click.echo(load_report("after", settings.threads, after))
        results["environment"]["load_average"] = {"before": before, "after": after}
        save(results)
    plots = bench_report.plot_results(results, out)
    click.echo(bench_report.format_tables(results))
    click.echo("")
    click.echo(bench_report.format_goal(bench_report.goal_check(results)))
    written = ([] if opts["from_json"] else [results_path]) + plots
    if opts["doc"]:
        doc = Path(opts["doc"])
        rel = [_relative(p, doc.parent) for p in plots]
        bench_report.update_doc(doc, bench_report.render_section(results, rel))
        written.append(doc)
    click.echo(f"\nwrote {', '.join(map(str, written))}")


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())


COMMANDS = [bench]

if __name__ == "__main__":  # usable before the command is registered: python -m ptdit_export.cli.bench_cmd
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bench()

"""The Python side of benchmarks/gpu_check.sh: each stage's work, its record, and the summary.

    python benchmarks/gpu_check.py detect  OUT              -> prints "yes" when a CUDA GPU is visible
    python benchmarks/gpu_check.py build   OUT              -> kernels for this GPU's architecture only
    python benchmarks/gpu_check.py plugin_tests OUT         -> pytest tests/plugins -m gpu on them
    python benchmarks/gpu_check.py kernel_bench OUT         -> benchmarks/bench_kernels.py's run
    python benchmarks/gpu_check.py model   OUT              -> the 1.1B model on the torch engine
    python benchmarks/gpu_check.py record  OUT STAGE RC SECONDS BUDGET
    python benchmarks/gpu_check.py skip    OUT STAGE REASON
    python benchmarks/gpu_check.py summary OUT              -> OUT/summary.json and OUT/summary.md

A stage's work writes OUT/stages/STAGE.results.json; `record` adds the outcome (ok, failed with
its exit code, or timeout) from the shell, so a stage that crashes or hangs is still recorded
and the others run. Needs PyTorch only (plus pytest for the plugin tests); never the network.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "runtime")]

# stage -> (what it checks, budget in seconds); the budgets sum to 430 of the 480 allowed (gpu_check.sh)
STAGES = {
    "build": ("libptdit_kernels.so for this GPU's architecture (CMake + nvcc)", 150),
    "plugin_tests": ("pytest tests/plugins -m gpu against that library", 80),
    "kernel_bench": ("fused kernels vs PyTorch at the released shapes; proxy pooling bandwidth", 70),
    "model": ("1.1B bf16 on the torch engine: one step, 30-step guided 1024 px loop", 130),
}
GOALS = {
    "shifted_speedup": "fused shifted-window attention >= 1.5x PyTorch's (every released shape, graph time)",
    "pool_bandwidth": "proxy pooling >= 70% of HBM bandwidth (bf16/fp16, every shape)",
    "loop_seconds": "30-step guided 1024x1024 loop <= 1.0 s (best torch-engine variant)",
    "loop_mfu": "that loop at >= 50% MFU (H100-class bf16 dense peak)",
}
STEPS, PIXELS, TEXT_LEN, GUIDANCE = 30, 1024, 200, 4.0


def stage_dir(out: Path) -> Path:
    path = out / "stages"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_results(out: Path, stage: str, results: dict) -> None:
    (stage_dir(out) / f"{stage}.results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ stages
def detect(out: Path) -> None:
    """Record the machine; print yes/no for "a CUDA GPU is visible"."""
    env = {"python": platform.python_version(), "nvcc": shutil.which("nvcc"), "cmake": shutil.which("cmake")}
    try:
        import torch

        env |= {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.is_available()}
        if env["gpu"]:
            env |= {
                "device": torch.cuda.get_device_name(0),
                "capability": torch.cuda.get_device_capability(0),
            }
    except ImportError as err:
        env |= {"torch": None, "gpu": False, "error": str(err)}
    (stage_dir(out).parent / "env.json").write_text(json.dumps(env, indent=2) + "\n")
    print("yes" if env["gpu"] else "no")


def build(out: Path) -> None:
    from ptdit_export import kernels

    arch = kernels.present_architecture()
    t0 = time.perf_counter()
    lib = kernels.build_library(out / "build", cuda_architectures=arch, jobs=None)
    write_results(out, "build", {"library": str(lib), "arch": arch, "seconds": time.perf_counter() - t0})
    print(lib)


def _randomise_on_device(model, seed: int = 0) -> None:
    """Every parameter random with a sensible scale, drawn on the model's device (fast for 1.1B)."""
    import torch

    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = p[0].numel() ** -0.5 if p.ndim > 1 and "table" not in name else 0.2
            p.normal_(0.0, std, generator=g)


def model(out: Path, preset: str = "qihoo-t2x-1.1b", device: str = "cuda", pixels: int = PIXELS) -> None:
    """The released 1.1B configuration (random weights, bf16) on the torch engine: one step and
    the 30-step guided 1024 px loop, SDPA against fused kernels, with and without CUDA graphs.
    (`preset`, `device`, `pixels` let the tests run the same code on a tiny model on the CPU.)"""
    import torch

    from ptdit_export import kernels
    from ptdit_export.bench.sweep import peak_tflops
    from ptdit_export.flops import ptdit_flops
    from ptdit_export.model import PTDiT
    from ptdit_runtime.engines.torch_ref import TorchEngine

    library = out / "build" / "lib" / kernels.LIBRARY_NAME
    if library.is_file():
        kernels.use_library(library)
    with torch.device(device):
        net = PTDiT.from_config(preset)
    _randomise_on_device(net)
    net = net.to(torch.bfloat16).eval()
    cfg = net.config
    latent = pixels // 8
    grid = (1, latent, latent)
    g = torch.Generator(device=device).manual_seed(1)
    noise = torch.randn(1, cfg.in_channels, 1, latent, latent, device=device, generator=g)
    text = torch.randn(2, TEXT_LEN, cfg.caption_channels, device=device, generator=g)
    mask = torch.zeros(2, TEXT_LEN, dtype=torch.int64, device=device)
    mask[0, :120], mask[1, :1] = 1, 1  # a 120-token prompt; the empty negative prompt
    step_flops = ptdit_flops(cfg, grid, batch=2, text_len=TEXT_LEN).total
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    try:
        peak = peak_tflops(name) * 1e12
    except ValueError:
        peak = None
    results = {
        "device": name, "parameters": net.num_parameters(), "grid": grid, "text_len": TEXT_LEN,
        "step_gflops": step_flops / 1e9, "loop_gflops": STEPS * step_flops / 1e9,
        "peak_tflops": peak / 1e12 if peak else None, "variants": {},
    }  # fmt: skip
    timesteps = [1000.0 * (1 - i / STEPS) for i in range(STEPS)] + [0.0]
    reference, pair, t1 = None, torch.cat([noise, noise]), torch.full((2,), 500.0, device=device)
    for attention in ("sdpa", "fused"):
        for graph in (False, True):
            key = f"{attention}{' + CUDA graphs' if graph else ''}"
            if attention == "fused" and (reason := kernels.unavailable()):
                results["variants"][key] = {"skipped": reason}
                continue
            engine = TorchEngine(net, device=device, dtype="bfloat16", attention=attention, cuda_graph=graph)

            def loop(engine=engine) -> torch.Tensor:
                x = noise.clone()
                t = torch.empty(2, device=device)
                for i in range(STEPS):
                    t.fill_(timesteps[i])
                    pred = engine.forward(torch.cat([x, x]), t, text, mask)[:, : cfg.in_channels].float()
                    cond, uncond = pred.chunk(2)
                    x = x + (uncond + GUIDANCE * (cond - uncond)) * (timesteps[i + 1] - timesteps[i]) / 1000
                return x

            first = engine.forward(pair, t1, text, mask).float().clone()
            step_ms = _median_ms(lambda engine=engine: engine.forward(pair, t1, text, mask), 5)
            loop()  # warm-up (captures the graph once per shape)
            loop_s = _median_ms(loop, 3) / 1e3
            entry = {"step_ms": step_ms, "loop_s": loop_s}
            if peak:
                entry["mfu"] = STEPS * step_flops / loop_s / peak
                entry["step_mfu"] = step_flops / (step_ms / 1e3) / peak
            if reference is None:
                reference = first
            else:
                entry["rel_err_vs_sdpa"] = float((first - reference).abs().max() / reference.abs().max())
            results["variants"][key] = entry
            print(key, json.dumps(entry), flush=True)
            engine.close()
            torch.cuda.empty_cache()
    write_results(out, "model", results)


def _median_ms(fn, repeats: int) -> float:
    import torch

    times = []
    for _ in range(repeats):
        if not torch.cuda.is_available():
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def plugin_tests(out: Path) -> int:
    """pytest tests/plugins -m gpu against the library the build stage made; counts from JUnit XML."""
    import xml.etree.ElementTree as ET

    xml = stage_dir(out) / "plugin_tests.xml"
    env = os.environ | {"PTDIT_KERNELS_LIB": str(out / "build" / "lib" / "libptdit_kernels.so")}
    cmd = [sys.executable, "-m", "pytest", "tests/plugins", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    rc = subprocess.call([*cmd, f"--junitxml={xml}"], cwd=REPO, env=env)
    if xml.is_file():
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        write_results(
            out, "plugin_tests", {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        )
    return rc


# ------------------------------------------------------------------ records and summary
def record(out: Path, stage: str, rc: int, seconds: float, budget: int) -> None:
    if rc == 0:
        status, detail = "ok", ""
    elif rc in (124, 137):
        status, detail = "timeout", f"over its {budget} s budget"
    else:
        status, detail = "failed", f"exit code {rc}"
    entry = {"status": status, "detail": detail, "seconds": round(seconds, 1), "budget_s": budget}
    (stage_dir(out) / f"{stage}.json").write_text(json.dumps(entry, indent=2) + "\n")


def skip(out: Path, stage: str, reason: str) -> None:
    entry = {"status": "skipped", "detail": reason, "seconds": 0.0, "budget_s": STAGES[stage][1]}
    (stage_dir(out) / f"{stage}.json").write_text(json.dumps(entry, indent=2) + "\n")


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def goals(stages: dict) -> dict:
    """Each goal: target, measured value, met (None when its stage gave no numbers)."""
    bench = stages.get("kernel_bench", {}).get("results") or {}
    shifted = [
        r["speedup_graph"] or r["speedup_eager"]
        for r in bench.get("attention", [])
        if r["op"] == "shifted_window_attention"
    ]
    shares = [
        r["peak_share"] for r in bench.get("proxy_pool", []) if r["dtype"] != "float32" and r["peak_share"]
    ]
    variants = (stages.get("model", {}).get("results") or {}).get("variants", {})
    loops = {k: v for k, v in variants.items() if "loop_s" in v}
    best = min(loops, key=lambda k: loops[k]["loop_s"]) if loops else None
    measured = {
        "shifted_speedup": min(shifted) if shifted else None,
        "pool_bandwidth": min(shares) if shares else None,
        "loop_seconds": loops[best]["loop_s"] if best else None,
        "loop_mfu": loops[best].get("mfu") if best else None,
    }
    meets = {
        "shifted_speedup": lambda v: v >= 1.5,
        "pool_bandwidth": lambda v: v >= 0.7,
        "loop_seconds": lambda v: v <= 1.0,
        "loop_mfu": lambda v: v >= 0.5,
    }
    return {
        k: {"goal": GOALS[k], "measured": v, "met": None if v is None else meets[k](v), "variant": best}
        for k, v in measured.items()
    }


def summary(out: Path) -> int:
    stages = {}
    for stage, (what, budget) in STAGES.items():
        entry = _load(stage_dir(out) / f"{stage}.json") or {
            "status": "failed", "detail": "no record (the script stopped early)", "budget_s": budget,
        }  # fmt: skip
        entry["what"] = what
        if (stage_dir(out) / f"{stage}.log").is_file():
            entry["log"] = f"stages/{stage}.log"
        results = _load(stage_dir(out) / f"{stage}.results.json")
        if results is not None:
            entry["results"] = results
        stages[stage] = entry
    data = {
        "env": _load(out / "env.json") or {},
        "budget_s": {"total": 480, **{s: b for s, (_, b) in STAGES.items()}},
        "stages": stages,
        "goals": goals(stages),
    }
    (out / "summary.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(markdown(data))
    print((out / "summary.md").read_text())
    return 1 if any(s["status"] in ("failed", "timeout") for s in stages.values()) else 0


def _fmt(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def markdown(data: dict) -> str:
    env = data["env"]
    lines = [
        "# GPU check",
        "",
        f"Device: {env.get('device', 'none')}; torch {env.get('torch')}, CUDA {env.get('cuda')}; "
        f"nvcc {'found' if env.get('nvcc') else 'missing'}.",
        "",
        "| stage | status | seconds (budget) | what |",
        "|---|---|---|---|",
    ]
    for name, s in data["stages"].items():
        status = s["status"] + (f": {s['detail']}" if s.get("detail") else "")
        lines.append(
            f"| {name} | {status} | {_fmt(s.get('seconds'), '.1f')} ({s['budget_s']}) | {s['what']} |"
        )
    lines += ["", "| goal | measured | met |", "|---|---|---|"]
    for key, g in data["goals"].items():
        spec = {"shifted_speedup": ".2f", "pool_bandwidth": ".1%", "loop_seconds": ".3f", "loop_mfu": ".1%"}[
            key
        ]
        met = {True: "yes", False: "no", None: "not measured"}[g["met"]]
        lines.append(f"| {g['goal']} | {_fmt(g['measured'], spec)} | {met} |")
    bench = data["stages"]["kernel_bench"].get("results")
    if bench:
        lines += [
            "",
            "| op | shape | dtype | fused ms | PyTorch ms | speed-up (graph) |",
            "|---|---|---|---|---|---|",
        ]
        for r in bench["attention"]:
            lines.append(
                f"| {r['op']} | {r['shape']} | {r['dtype']} | {_fmt(r['fused_graph_ms'], '.3f')} | "
                f"{_fmt(r['torch_graph_ms'], '.3f')} | {_fmt(r['speedup_graph'], '.2f')} |"
            )
        lines += ["", "| proxy pooling | dtype | TB/s | share of peak | speed-up |", "|---|---|---|---|---|"]
        for r in bench["proxy_pool"]:
            lines.append(
                f"| {r['shape']} | {r['dtype']} | {_fmt(r['bandwidth_tb_s'], '.2f')} | "
                f"{_fmt(r['peak_share'], '.1%')} | {_fmt(r['speedup'], '.2f')} |"
            )
    model_results = data["stages"]["model"].get("results")
    if model_results:
        lines += [
            "",
            f"1.1B bf16, {PIXELS} px, guided (batch 2), {TEXT_LEN} text tokens, "
            f"{model_results['step_gflops']:.0f} GFLOP per step:",
            "",
            "| variant | step ms | 30-step loop s | MFU | rel. error vs SDPA |",
            "|---|---|---|---|---|",
        ]
        for key, v in model_results["variants"].items():
            if "skipped" in v:
                lines.append(f"| {key} | skipped: {v['skipped']} | | | |")
                continue
            lines.append(
                f"| {key} | {_fmt(v['step_ms'], '.1f')} | {_fmt(v['loop_s'], '.3f')} | "
                f"{_fmt(v.get('mfu'), '.1%')} | {_fmt(v.get('rel_err_vs_sdpa'), '.1e')} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.exit(__doc__)
    command, out = argv[0], Path(argv[1])
    if command == "record":
        record(out, argv[2], int(argv[3]), float(argv[4]), int(argv[5]))
    elif command == "skip":
        skip(out, argv[2], argv[3])
    elif command == "summary":
        return summary(out)
    elif command == "plugin_tests":
        return plugin_tests(out)
    elif command in ("detect", "build", "model"):
        {"detect": detect, "build": build, "model": model}[command](out)
    elif command == "kernel_bench":
        sys.path.insert(0, str(REPO / "benchmarks"))
        import bench_kernels

        write_results(out, "kernel_bench", bench_kernels.run(50, out / "build", None))
    else:
        sys.exit(f"unknown command {command!r}\n{__doc__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

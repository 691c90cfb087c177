"""Ascend NPUs: the portable graph -> ATC -> an offline model (.om).

The graph that goes to ATC is the portable one (`--graph portable`: standard ONNX operators,
opset <= 18), checked node by node against CANN's parser registrations (`atc_graph`). A custom
node would need a C++ ATC parser plugin plus an Ascend C kernel; none is written here.

The graph is exported in fp32 and ATC sets the precision (`--precision_mode_v2`): `mixed_float16`
and `mixed_bfloat16` lower the fp32 operators that ATC's built-in lists allow and keep the rest
(LayerNorm statistics, Softmax, reductions) in fp32, `origin` keeps fp32. Those modes are
defined relative to an fp32 graph: an fp16 ONNX graph would leave ATC nothing to decide and fix
dtypes ATC's lists disagree with. The fp32 graph is also the one verified against PyTorch at the
fp32 tolerance.

Files beside DIR/transformer/model.onnx:
    atc.sh       the exact `atc` command; `sh atc.sh` on a machine with CANN writes model.om
    ascend.json  AscendSettings, the ATC argv, the compiled shapes, the graph's ops
    model.om     only when `atc` was on PATH and succeeded; then manifest.json is written last
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ptdit_export import __version__
from ptdit_export.builder.atc_graph import (
    AXES,
    MAX_OPSET,
    PROFILES,
    AtcInputs,
    AtcShape,
    AtcUnsupported,
    atc_inputs,
    check_atc_graph,
    domain_name,
    graph_inputs,
    prune_opset_imports,
    static_problems,
)
from ptdit_export.export.artifacts import write_json

log = logging.getLogger(__name__)

SCRIPT = "atc.sh"
SETTINGS = "ascend.json"
OM = "model.om"
PARTIAL = "model_partial"  # ATC writes PARTIAL.om; atc.sh renames it to model.om when ATC succeeded
MIN_OPSET = 14  # the exporter's lower bound
PRECISION_MODES = {"fp32": "origin", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}
ATC_PRECISION_MODES = ("fp16", "origin", "mixed_float16", "mixed_bfloat16")
LOG_LEVELS = ("debug", "info", "warning", "error", "null")
BF16_SOCS = ("Ascend910B", "Ascend910_93")  # Atlas A2 / A3: the chips ATC documents bfloat16 for
TAIL_LINES = 40
NOT_BUILT = (
    "no .om was built: `atc` is not on PATH here. On a machine with CANN, run `source "
    "<CANN>/set_env.sh` (puts atc on PATH), then `sh {script}`; it writes {om}"
)


class AtcUnavailable(RuntimeError):
    pass


class AtcFailed(RuntimeError):
    pass


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AscendSettings:
    """How to convert; written into ascend.json beside the graph."""

    soc_version: str = "Ascend910B"  # atc --soc_version: "Ascend" + the Name column of `npu-smi info`
    precision: str = "fp16"  # fp32 | fp16 | bf16 -> precision_mode_v2 origin | mixed_float16 | mixed_bfloat16
    precision_mode: str | None = None  # an explicit --precision_mode_v2 instead of the mapped one
    shapes: tuple[AtcShape, ...] = ()  # one: static; 2..100: --dynamic_dims profiles
    opset: int = MAX_OPSET
    log: str = "error"

    def __post_init__(self) -> None:
        if self.precision not in PRECISION_MODES:
            raise ValueError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISION_MODES)}")
        if self.precision_mode is not None and self.precision_mode not in ATC_PRECISION_MODES:
            raise ValueError(
                f"--precision-mode {self.precision_mode!r}: choose one of {', '.join(ATC_PRECISION_MODES)}"
            )
        if not re.fullmatch(r"Ascend[0-9A-Za-z_]+", self.soc_version):
            raise ValueError(
                f"--soc-version {self.soc_version!r}: use 'Ascend' + the chip name `npu-smi info` shows "
                "(e.g. Ascend910B3, Ascend310P3)"
            )
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ValueError(
                f"--opset {self.opset}: ATC parses ONNX opsets up to {MAX_OPSET}; use {MAX_OPSET}"
            )
        if self.log not in LOG_LEVELS:
            raise ValueError(f"log level {self.log!r}: choose one of {', '.join(LOG_LEVELS)}")
        if len(set(self.shapes)) != len(self.shapes):
            raise ValueError(f"the ATC shapes repeat one another: {list(self.shapes)}")
        if not self.shapes or len(self.shapes) > PROFILES[1]:
            raise ValueError(
                f"ATC compiles one static shape or {PROFILES[0]}..{PROFILES[1]} --dynamic_dims profiles; "
                f"got {len(self.shapes)}"
            )

    @property
    def atc_precision_mode(self) -> str:
        return self.precision_mode or PRECISION_MODES[self.precision]

    @property
    def dynamic(self) -> bool:
        return len(self.shapes) > 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"atc_precision_mode": self.atc_precision_mode}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AscendSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        kw["shapes"] = tuple(AtcShape(**s) for s in kw.get("shapes", ()))
        return cls(**kw)


def parse_shapes(spec: str) -> list[tuple[int | None, int, int, int | None]]:
    """'512x512;2@1024x768' -> [(prompts, height, width, frames)], pixels; None where not given.

    One shape is [PROMPTS@]HEIGHTxWIDTH[xFRAMES]; shapes are separated by ';' or ','.
    """
    out = []
    for part in filter(None, (p.strip() for p in re.split(r"[;,]", spec))):
        m = re.fullmatch(r"(?:(\d+)@)?(\d+)x(\d+)(?:x(\d+))?", part)
        if m is None:
            raise ValueError(
                f"ATC shape {part!r}: write [PROMPTS@]HEIGHTxWIDTH[xFRAMES] in pixels, e.g. 512x512 or 2@1024x768"
            )
        p, h, w, f = m.groups()
        out.append((int(p) if p else None, int(h), int(w), int(f) if f else None))
    if not out:
        raise ValueError("--dynamic-dims is empty: give at least two shapes, e.g. '512x512;1024x1024'")
    return out


def graph_shape(
    config, prompts: int, height: int, width: int, frames: int, text_len: int, cfg: bool, vae_scale: int
) -> AtcShape:
    """Prompts and pixels -> graph batch and latent sizes (checked against the windows)."""
    from ptdit_export.builder.profiles import ShapeRange

    p = ShapeRange(
        prompts=(prompts,) * 3,
        height=(height,) * 3,
        width=(width,) * 3,
        frames=(frames,) * 3,
        text_len=(text_len,) * 3,
        cfg=cfg,
    ).graph_profiles(config, vae_scale)
    config.check_latent(config.in_channels, frames, p["latent_height"].opt, p["latent_width"].opt)
    return AtcShape(p["batch"].opt, frames, p["latent_height"].opt, p["latent_width"].opt, text_len)


# ----------------------------------------------------------------------------- command


def atc_command(model: str, settings: AscendSettings, shapes: AtcInputs, output: str = PARTIAL) -> list[str]:
    """The atc argv (run in the folder holding MODEL)."""
    argv = [
        "atc",
        f"--model={model}",
        "--framework=5",
        f"--output={output}",
        f"--soc_version={settings.soc_version}",
        f"--input_shape={shapes.input_shape}",
        "--input_format=ND",
        f"--precision_mode_v2={settings.atc_precision_mode}",
    ]
    if shapes.dynamic_dims is not None:
        argv.append(f"--dynamic_dims={shapes.dynamic_dims}")
    argv.append(f"--log={settings.log}")
    return argv


def shell_command(argv: Sequence[str]) -> str:
    """One shell line; option values quoted where the shell would split or interpret them."""

    def word(arg: str) -> str:
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
            return f"{key}={shlex.quote(value)}"
        return shlex.quote(arg)

    return " ".join(word(a) for a in argv)


def atc_script(argv: Sequence[str], settings: AscendSettings, shapes: AtcInputs, opset: int) -> str:
    kind = (
        f"{len(settings.shapes)} --dynamic_dims profiles (listed in {SETTINGS})"
        if shapes.dynamic_dims
        else "one static shape (--input_shape below)"
    )
    return "\n".join(
        [
            "#!/bin/sh",
            f"# Written by ptdit-export {__version__}: converts model.onnx in this folder (portable graph, fp32,",
            f"# opset {opset}) into {OM} for {settings.soc_version}; ATC sets the precision",
            f"# (--precision_mode_v2={settings.atc_precision_mode}). Shapes: {kind}.",
            "# Needs CANN: `source <CANN>/set_env.sh` puts atc on PATH. Run: sh atc.sh",
            "set -eu",
            'cd "$(dirname "$0")"',
            f"rm -f {PARTIAL}.om",
            shell_command(argv),
            f"mv -f {PARTIAL}.om {OM}",
            f'echo "wrote $(pwd)/{OM}"',
            "",
        ]
    )


def _write_text(path: Path, text: str, mode: int) -> None:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@dataclass(frozen=True)
class AtcRun:
    returncode: int
    output_tail: str


def run_atc(folder: Path, timeout: float | None = None) -> AtcRun:
    """Run FOLDER/atc.sh (which calls `atc` from PATH); stdout and stderr together, last lines kept."""
    proc = subprocess.run(
        ["sh", str(Path(folder) / SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    tail = "\n".join(proc.stdout.splitlines()[-TAIL_LINES:])
    return AtcRun(proc.returncode, tail)


# ------------------------------------------------------------------------------- build


@dataclass(frozen=True)
class AscendResult:
    folder: Path
    om: Path | None  # None: not built here
    script: Path
    command: str
    returncode: int | None  # None: atc did not run
    output_tail: str
    message: str

    @property
    def om_built(self) -> bool:
        return self.om is not None


def _tensor_specs(values, dims_of=None) -> list[dict[str, Any]]:
    from onnx.helper import tensor_dtype_to_np_dtype

    out = []
    for vi in values:
        t = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if dims_of is not None and vi.name in dims_of:
            shape = list(dims_of[vi.name])
        out.append({"name": vi.name, "dtype": str(tensor_dtype_to_np_dtype(t.elem_type)), "shape": shape})
    return out


def ascend_from_onnx(
    onnx_path: str | Path, settings: AscendSettings, run: bool | None = None, timeout: float | None = None
) -> AscendResult:
    """Check ONNX_PATH for ATC, write atc.sh + ascend.json beside it and run ATC when asked/possible.

    run: None runs `atc` when it is on PATH; True insists (AtcUnavailable without it); False never.
    """
    import onnx

    onnx_path = Path(onnx_path)
    folder = onnx_path.parent
    model = onnx.load(str(onnx_path), load_external_data=False)
    dropped = prune_opset_imports(model)
    if dropped:
        log.info("dropping unused opset imports %s (ATC needs exactly one)", dropped)
        onnx.save_model(model, str(onnx_path))  # the graph only; external weights stay where they are
    counts = check_atc_graph(model)
    opset = {domain_name(o.domain): o.version for o in model.opset_import}["ai.onnx"]
    if not settings.dynamic:
        loose = static_problems(model)
        if loose:
            raise AtcUnsupported(
                "a static ATC conversion needs every graph input and output fixed; dynamic here: "
                + "; ".join(loose)
                + " (export with --static at the requested size, or give --dynamic-dims profiles)"
            )
    shapes = atc_inputs(graph_inputs(model), settings.shapes)
    argv = atc_command(onnx_path.name, settings, shapes)
    command = shell_command(argv)
    script = folder / SCRIPT
    _write_text(script, atc_script(argv, settings, shapes, opset), 0o755)
    for stale in (OM, "manifest.json"):  # never leave an .om (or its manifest) of other settings here
        (folder / stale).unlink(missing_ok=True)
    info: dict[str, Any] = {
        "ptdit_export": __version__,
        "settings": settings.to_dict(),
        "atc": {
            "argv": argv,
            "command": command,
            "script": SCRIPT,
            "input_shape": shapes.input_shape,
            "dynamic_dims": shapes.dynamic_dims,
            "dynamic_axes": [list(e) for e in shapes.dynamic_axes],
        },
        "inputs": _tensor_specs(model.graph.input, shapes.shapes),
        "outputs": _tensor_specs(model.graph.output),
        "profiles": [
            {n: [getattr(s, q) if q else d for d, q in zip(shapes.shapes[n], AXES[n])] for n in shapes.shapes}
            for s in settings.shapes
        ],
        "graph": {"opset": opset, "ops": counts},
        "om": None,
        "run": None,
    }
    write_json(folder / SETTINGS, info)

    atc = shutil.which("atc")
    if run is True and atc is None:
        raise AtcUnavailable(NOT_BUILT.format(script=script, om=folder / OM))
    if run is False or atc is None:
        message = NOT_BUILT.format(script=script, om=folder / OM)
        if run is False:
            message = f"no .om was built (ATC not run, as asked); to build it: sh {script}"
        log.warning("%s", message)
        return AscendResult(folder, None, script, command, None, "", message)

    log.info("running %s (atc: %s)", script, atc)
    result = run_atc(folder, timeout)
    om = folder / OM
    built = result.returncode == 0 and om.is_file()
    info["run"] = {"atc": atc, "returncode": result.returncode, "output_tail": result.output_tail}
    info["om"] = OM if built else None
    write_json(folder / SETTINGS, info)
    if not built:
        why = f"exited with {result.returncode}" if result.returncode else f"exited 0 but wrote no {OM}"
        raise AtcFailed(f"ATC {why}; no .om was built. Last output:\n{result.output_tail}")
    message = f"ATC built {om} (return code 0)"
    log.info("%s", message)
    return AscendResult(folder, om, script, command, 0, result.output_tail, message)


def export_settings_for(config, settings: AscendSettings):
    """ExportSettings of the ATC-bound graph: portable, fp32; static at the one shape, or dynamic
    traced at the first profile (sizes at least two windows) with the profiles' min/max recorded."""
    from ptdit_export.export.transformer import ExportSettings, Profile

    first = settings.shapes[0]
    common = {"precision": "fp32", "graph": "portable", "opset": settings.opset}
    if not settings.dynamic:
        return ExportSettings(
            **common,
            dynamic=False,
            batch=first.batch,
            latent_height=first.latent_height,
            latent_width=first.latent_width,
            frames=first.frames,
            text_len=first.text_len,
        )

    def prof(name: str) -> Profile:
        values = [getattr(s, name) for s in settings.shapes]
        return Profile(min(values), getattr(first, name), max(values))

    wf, wh, ww = config.compress_ratios
    p = config.patch_size
    video = any(s.frames > 1 for s in settings.shapes)
    return ExportSettings(
        **common,
        dynamic=True,
        batch=max(first.batch, 2),
        latent_height=max(first.latent_height, 2 * p * wh),
        latent_width=max(first.latent_width, 2 * p * ww),
        frames=max(first.frames, 2 * wf) if video else 1,
        text_len=max(first.text_len, 2),
        batch_profile=prof("batch"),
        height_profile=prof("latent_height"),
        width_profile=prof("latent_width"),
        frames_profile=prof("frames") if video else None,
        text_profile=prof("text_len"),
    )


def build_ascend(
    model_arg: str,
    out_dir: str | Path,
    soc_version: str = "Ascend910B",
    precision: str = "fp16",
    height: int | None = None,
    width: int | None = None,
    frames: int = 1,
    prompts: int = 1,
    dynamic_dims: str | Sequence[tuple[int | None, int, int, int | None]] | None = None,
    text_len: int = 200,
    cfg: bool = True,
    vae_scale: int | None = None,
    seed: int = 0,
    precision_mode: str | None = None,
    components: dict[str, Any] | None = None,
    run: bool | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Export MODEL_ARG's portable fp32 graph for ATC into OUT_DIR and convert it where `atc` runs.

    Sizes are pixels and prompts (CFG doubles the graph batch unless cfg=False). Without
    dynamic_dims: one static shape (prompts, height x width, frames). With dynamic_dims (a string
    for parse_shapes, or (prompts, height, width, frames) tuples, None meaning the defaults given
    here): 2..100 ATC profiles. Returns a report dict; `om_built` says whether an .om exists.
    """
    from ptdit_export.builder import manifest as mf
    from ptdit_export.export.source import model_from_source, source_of
    from ptdit_export.export.transformer import onnx_from_model
    from ptdit_export.model import load_config
    from ptdit_export.model.presets import PRESETS

    out_dir = Path(out_dir)
    source = source_of(model_arg, seed)
    config = load_config(source.get("checkpoint") or source.get("config") or source["preset"])
    preset = PRESETS.get(model_arg)
    scale = vae_scale or (preset.components.get("vae_scale", 8) if preset else 8)
    native = config.sample_size * scale
    height, width = height or native, width or native
    if isinstance(dynamic_dims, str):
        dynamic_dims = parse_shapes(dynamic_dims)
    wanted = dynamic_dims or [(prompts, height, width, frames)]
    shapes = tuple(
        graph_shape(config, p or prompts, h, w, f or frames, text_len, cfg, scale) for p, h, w, f in wanted
    )
    if dynamic_dims and len(shapes) < PROFILES[0]:
        raise ValueError(
            "--dynamic-dims needs at least two shapes; give one size without it for a static model"
        )
    settings = AscendSettings(
        soc_version=soc_version, precision=precision, precision_mode=precision_mode, shapes=shapes
    )
    if settings.atc_precision_mode == "mixed_bfloat16" and not soc_version.startswith(BF16_SOCS):
        log.warning(
            "ATC documents mixed_bfloat16 for Atlas A2/A3 (%s...) only, not %s", BF16_SOCS, soc_version
        )

    folder = out_dir / "transformer"
    atc = shutil.which("atc")
    key = mf.build_key(
        source=mf.source_fingerprint(source),
        settings=settings.to_dict(),
        facts={"backend": "ascend", "atc": atc},
        components=sorted((components or {}).items()),
    )
    if not force and atc is not None and mf.is_cache_hit(folder, key):
        log.info("%s is up to date (manifest key matches); --force rebuilds", out_dir)
        return mf.read_json(folder / mf.MANIFEST) | {"cache_hit": True}

    export = export_settings_for(config, settings)
    onnx_path = onnx_from_model(model_from_source(source), out_dir, export, source)
    result = ascend_from_onnx(onnx_path, settings, run=run)

    from ptdit_export.builder.components import write_components

    write_components(out_dir, model_arg, components or {})
    report = {
        "backend": "ascend",
        "precision": precision,
        "atc_precision_mode": settings.atc_precision_mode,
        "soc_version": soc_version,
        "shapes": [dataclasses.asdict(s) for s in shapes],
        "source": source,
        "om_built": result.om_built,
        "script": str(result.script),
        "command": result.command,
        "returncode": result.returncode,
        "message": result.message,
    }
    if result.om_built:
        files = ["model.onnx", "config.json", "export.json", SCRIPT, SETTINGS, OM]
        return mf.write_manifest(folder, key, files, **report)
    return report


# ------------------------------------------------------------------------------ CLI glue


# The options `ptdit-export build` needs for --backend ascend; attach them to the command.
CLICK_OPTIONS = [
    click.option(
        "--soc-version",
        default="Ascend910B",
        show_default=True,
        help="Ascend: ATC --soc_version, 'Ascend' + the chip name `npu-smi info` shows (e.g. Ascend910B3).",
    ),
    click.option(
        "--dynamic-dims",
        default=None,
        help="Ascend: 2..100 ATC shape profiles, [PROMPTS@]HEIGHTxWIDTH[xFRAMES] in pixels separated by "
        "';' (e.g. '512x512;2@1024x768'); without it one static shape from the opt values of "
        "--prompts/--height/--width/--frames/--text-len.",
    ),
    click.option(
        "--precision-mode",
        type=click.Choice(list(ATC_PRECISION_MODES)),
        default=None,
        help="Ascend: ATC --precision_mode_v2 instead of the one --precision maps to "
        "(fp32: origin, fp16: mixed_float16, bf16: mixed_bfloat16).",
    ),
]


def build_from_cli(
    model: str,
    out_dir: str | Path,
    precision: str,
    prompts: tuple[int, int, int],
    height: tuple[int, int, int] | None,
    width: tuple[int, int, int] | None,
    frames: tuple[int, int, int],
    text_len: tuple[int, int, int],
    no_cfg: bool,
    vae_scale: int | None,
    soc_version: str,
    dynamic_dims: str | None,
    precision_mode: str | None,
    seed: int,
    components: dict[str, Any] | None,
    force: bool,
) -> dict[str, Any]:
    """`build --backend ascend` with the values `ptdit-export build` parsed (ranges: the opt value)."""
    return build_ascend(
        model,
        out_dir,
        soc_version=soc_version,
        precision=precision,
        height=height[1] if height else None,
        width=width[1] if width else None,
        frames=frames[1],
        prompts=prompts[1],
        dynamic_dims=dynamic_dims,
        text_len=text_len[1],
        cfg=not no_cfg,
        vae_scale=vae_scale,
        seed=seed,
        precision_mode=precision_mode,
        components=components,
        force=force,
    )


def describe(report: dict[str, Any]) -> str:
    """One line for the CLI: what was built, or that no .om was and how to build it."""
    if report.get("cache_hit"):
        return f"up to date for ascend ({report.get('soc_version')})"
    if report.get("om_built"):
        return f"built model.om for {report['soc_version']} ({report['atc_precision_mode']})"
    return report["message"]

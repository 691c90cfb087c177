"""FLOPs of one forward pass of PT-DiT and of its dense baseline, and the paper's Eq. 4.

Convention: a multiply-add is 2 FLOPs and only matrix products count (linears, the patch
embedding convolution, attention score and value products), which is what
torch.utils.flop_counter.FlopCounterMode counts; elementwise work (norms, softmax, GELU,
modulation, masks, proxy means, the position code) is left out of both the analytic count and
the measured one. Components are named "linear.<part>" and "attention.<kind>":

  linear.patch_embed, linear.caption_projection, linear.adaln (timestep MLP + adaLN-single),
  linear.final (proj_out), linear.<kind> (to_q/to_k/to_v/to_out of that attention),
  linear.linear_1_visual / linear.linear_2 (PT-DiT's branch output projections), linear.mlp,
  attention.<kind> (q k^T and softmax(.) v), kind in proxy, proxy_cross, window,
  shifted_window, text (PT-DiT) and global, text (dense).

Latent sizes: images and video go through the VAE with 8x spatial compression; in time the
Open-Sora-Plan causal VAE keeps the first frame and compresses the rest by 4, so F pixel frames
give 1 + (F - 1) / 4 latent frames (`latent_frames`, `causal=False` for a plain F / 4).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction

from ptdit_export.model.config import PTDiTConfig, window_schedule
from ptdit_export.model.dense import (
    DenseDiTConfig,
    count_parameters,
    dense_config_equal_params,
    dense_config_equal_width,
)
from ptdit_export.model.embeddings import TIMESTEP_CHANNELS

SPATIAL_COMPRESSION = 8  # VAE, pixels per latent along H and W
TEMPORAL_COMPRESSION = 4  # VAE, frames per latent frame (after the first, causal VAE)
DEFAULT_TEXT_LEN = 200  # the release's T5 max length

Config = PTDiTConfig | DenseDiTConfig


# ----------------------------------------------------------------------------- geometry
def latent_frames(frames: int, temporal_compression: int = TEMPORAL_COMPRESSION, causal: bool = True) -> int:
    """Pixel frames -> latent frames. Images (1 frame) stay 1; a causal VAE maps 1 + tc*k -> 1 + k."""
    tc = temporal_compression
    if frames < 1 or tc < 1:
        raise ValueError(f"frames ({frames}) and temporal compression ({tc}) must be >= 1")
    if frames == 1:
        return 1
    if causal:
        if (frames - 1) % tc:
            lo = (frames - 1) // tc * tc + 1
            raise ValueError(
                f"a causal VAE with temporal compression {tc} takes 1 + {tc}k frames; "
                f"got {frames} (nearest: {max(lo, 1 + tc)} or {lo + tc})"
            )
        return 1 + (frames - 1) // tc
    if frames % tc:
        raise ValueError(f"frames={frames} is not a multiple of the temporal compression {tc}")
    return frames // tc


def latent_grid(
    resolution: int | tuple[int, int],
    frames: int = 1,
    temporal_compression: int = TEMPORAL_COMPRESSION,
    causal: bool = True,
) -> tuple[int, int, int]:
    """Pixels (square side or (height, width)) and frames -> latent (F, H, W)."""
    hh, ww = (resolution, resolution) if isinstance(resolution, int) else resolution
    s = SPATIAL_COMPRESSION
    if hh % s or ww % s:
        raise ValueError(f"image size {hh}x{ww} px must be a multiple of the VAE factor {s}")
    return (latent_frames(frames, temporal_compression, causal), hh // s, ww // s)


def token_grid(cfg: Config, grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """Latent (F, H, W) -> tokens (F, H/p, W/p); PT-DiT also checks the windows fit."""
    f, hh, ww = grid
    if isinstance(cfg, PTDiTConfig):
        cfg.check_latent(cfg.in_channels, f, hh, ww)
    elif hh % cfg.patch_size or ww % cfg.patch_size:
        raise ValueError(f"latent {hh}x{ww} is not a multiple of patch_size {cfg.patch_size}")
    return f, hh // cfg.patch_size, ww // cfg.patch_size


# ---------------------------------------------------------------------------- counts
@dataclass
class FlopCount:
    """FLOPs of one forward pass by component; `tokens` is N per sample."""

    components: dict[str, int] = field(default_factory=dict)
    tokens: int = 0

    @property
    def total(self) -> int:
        return sum(self.components.values())

    def part(self, prefix: str) -> int:
        """Sum over components starting with `prefix` ("linear.", "attention.", ...)."""
        return sum(v for k, v in self.components.items() if k.startswith(prefix))

    @property
    def visual_attention(self) -> int:
        """Score/value products of the attentions among visual tokens (all but text)."""
        return self.part("attention.") - self.components.get("attention.text", 0)

    def gflops(self) -> dict[str, float]:
        return {k: v / 1e9 for k, v in self.components.items()}


def _mm(rows: int, inner: int, cols: int) -> int:
    """FLOPs of [rows, inner] @ [inner, cols]."""
    return 2 * rows * inner * cols


def _shared(cfg: Config, b: int, n: int, text_len: int) -> tuple[dict[str, int], dict[str, int]]:
    """(once-per-pass components, per-layer text + MLP components) common to both models."""
    d, p, L = cfg.hidden_size, cfg.patch_size, text_len
    once = {
        "linear.patch_embed": _mm(b * n, cfg.in_channels * p * p, d),
        "linear.caption_projection": (
            _mm(b * L, cfg.caption_channels, d) + _mm(b * L, d, d) if cfg.caption_channels else 0
        ),
        "linear.adaln": _mm(b, TIMESTEP_CHANNELS, d) + _mm(b, d, d) + _mm(b, d, 6 * d),
        "linear.final": _mm(b * n, d, p * p * cfg.out_channels),
    }
    if cfg.use_additional_conditions:  # resolution ([B, 2] -> 2B rows) and aspect-ratio embedders
        d3 = d // 3
        once["linear.adaln"] += _mm(3 * b, TIMESTEP_CHANNELS, d3) + _mm(3 * b, d3, d3)
    ff_in = 8 * d if cfg.activation_fn == "geglu" else 4 * d
    layer = {
        "linear.text": 2 * _mm(b * n, d, d) + 2 * _mm(b * L, d, d),
        "attention.text": 2 * _mm(b * n, d, L),
        "linear.mlp": _mm(b * n, d, ff_in) + _mm(b * n, 4 * d, d),
    }
    return once, layer


def _assemble(once: dict[str, int], layer: dict[str, int], layers: int, n: int) -> FlopCount:
    comps = dict(once)
    for k, v in layer.items():
        comps[k] = comps.get(k, 0) + layers * v
    return FlopCount(comps, n)


def ptdit_flops(
    cfg: PTDiTConfig, grid: tuple[int, int, int], batch: int = 1, text_len: int = DEFAULT_TEXT_LEN
) -> FlopCount:
    """Analytic FLOPs of PTDiT(cfg) on latents [batch, C, *grid] with `text_len` caption tokens."""
    f, h, w = token_grid(cfg, grid)
    b, d, n = batch, cfg.hidden_size, f * h * w
    win = math.prod(cfg.window)  # tokens per window
    s = n // win * math.prod(cfg.proxy_groups)  # proxy tokens per sample
    once, layer = _shared(cfg, b, n, text_len)
    layer |= {
        "linear.proxy": 4 * _mm(b * s, d, d),
        "attention.proxy": 2 * _mm(b * s, d, s),
        "linear.proxy_cross": 2 * _mm(b * n, d, d) + 2 * _mm(b * s, d, d),
        "attention.proxy_cross": 2 * _mm(b * n, d, s),
        "linear.linear_1_visual": _mm(b * n, d, d),
        "linear.window": 4 * _mm(b * n, d, d),
        "attention.window": 2 * _mm(b * n, d, win),
    }
    if cfg.shift_window:  # the region mask is an added bias: same products as window attention
        layer |= {
            "linear.shifted_window": 4 * _mm(b * n, d, d),
            "attention.shifted_window": 2 * _mm(b * n, d, win),
            "linear.linear_2": _mm(b * n, d, d),
        }
    return _assemble(once, layer, cfg.num_layers, n)


def dense_flops(
    cfg: DenseDiTConfig, grid: tuple[int, int, int], batch: int = 1, text_len: int = DEFAULT_TEXT_LEN
) -> FlopCount:
    """Analytic FLOPs of DenseDiT(cfg): global self-attention over all N tokens of a sample."""
    f, h, w = token_grid(cfg, grid)
    b, d, n = batch, cfg.hidden_size, f * h * w
    once, layer = _shared(cfg, b, n, text_len)
    layer |= {"linear.global": 4 * _mm(b * n, d, d), "attention.global": 2 * _mm(b * n, d, n)}
    return _assemble(once, layer, cfg.num_layers, n)


def model_flops(cfg: Config, grid: tuple[int, int, int], batch: int = 1, text_len: int = DEFAULT_TEXT_LEN):
    """`ptdit_flops` or `dense_flops`, by config type."""
    fn = dense_flops if isinstance(cfg, DenseDiTConfig) else ptdit_flops
    return fn(cfg, grid, batch, text_len)


# ------------------------------------------------------------------ measured counts
# module name inside a block -> attention kind
_ATTENTIONS = {
    "PTDiT": {
        "proxy_attn1": "proxy",
        "pvisual_attn2": "proxy_cross",
        "attn1": "window",
        "attn3": "shifted_window",
        "attn2": "text",
    },
    "DenseDiT": {"attn1": "global", "attn2": "text"},
}
_TOP = {"pos_embed": "patch_embed", "caption_projection": "caption_projection", "adaln_single": "adaln"}


def measure_flops(
    cfg: Config,
    grid: tuple[int, int, int],
    batch: int = 1,
    text_len: int = DEFAULT_TEXT_LEN,
    reduced_depth: bool = False,
) -> FlopCount:
    """FLOPs counted by FlopCounterMode on the running model, split into the same components.

    The model runs on the meta device (shapes only, no memory, no arithmetic) with the "math"
    attention backend, so attention is seen as two matmuls. (With the "sdpa" backend the CPU
    flash kernel has no FLOP formula and its attention goes uncounted; on the meta device SDPA
    happens to decompose and is counted.) With `reduced_depth` it runs 1 and
    2 layers and extends the per-layer difference linearly to cfg.num_layers.
    Anything counted outside the named modules lands in "unattributed".
    """
    if reduced_depth and cfg.num_layers > 2:
        one = _measure_once(cfg.replace(num_layers=1), grid, batch, text_len).components
        two = _measure_once(cfg.replace(num_layers=2), grid, batch, text_len).components
        layers = cfg.num_layers
        comps = {k: one.get(k, 0) + (layers - 1) * (two.get(k, 0) - one.get(k, 0)) for k in one | two}
        return FlopCount(comps, math.prod(token_grid(cfg, grid)))
    return _measure_once(cfg, grid, batch, text_len)


def _measure_once(cfg: Config, grid: tuple[int, int, int], batch: int, text_len: int) -> FlopCount:
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from ptdit_export.model.attention import use_backend
    from ptdit_export.model.dense import DenseDiT
    from ptdit_export.model.ptdit import PTDiT

    width = cfg.caption_channels or cfg.hidden_size
    with torch.device("meta"):
        model = DenseDiT(cfg) if isinstance(cfg, DenseDiTConfig) else PTDiT(cfg)
        x = torch.empty(batch, cfg.in_channels, *grid)
        t = torch.empty(batch)
        text = torch.empty(batch, text_len, width)
        mask = torch.ones(batch, text_len)
        extra = None
        if cfg.use_additional_conditions:  # PixArt resolution / aspect-ratio conditioning
            extra = {"resolution": torch.empty(batch, 2), "aspect_ratio": torch.empty(batch, 1)}
    with use_backend("math"), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, t, text, mask, added_cond_kwargs=extra)
    root = type(model).__name__
    counted = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}

    def flops(name: str) -> int:
        return counted.get(f"{root}.{name}", 0)

    comps: dict[str, int] = defaultdict(int)
    for name, module in model.named_modules():
        parts = name.split(".")
        if name == "pos_embed.proj" or (parts[0] in _TOP and isinstance(module, nn.Linear)):
            comps[f"linear.{_TOP[parts[0]]}"] += flops(name)
        elif name == "proj_out":
            comps["linear.final"] += flops(name)
        elif parts[0] == "transformer_blocks" and len(parts) > 2:
            sub = parts[2]
            kind = _ATTENTIONS[root].get(sub)
            if kind and len(parts) == 3:  # the attention module: minus its projections
                inner = sum(
                    flops(f"{name}.{c}") for c, m in module.named_modules() if isinstance(m, nn.Linear)
                )
                comps[f"attention.{kind}"] += flops(name) - inner
            elif kind and isinstance(module, nn.Linear):
                comps[f"linear.{kind}"] += flops(name)
            elif sub == "ff" and isinstance(module, nn.Linear):
                comps["linear.mlp"] += flops(name)
            elif sub in ("linear_1_visual", "linear_2"):
                comps[f"linear.{sub}"] += flops(name)
    rest = counted.get("Global", 0) - sum(comps.values())
    if rest:
        comps["unattributed"] = rest
    return FlopCount(dict(comps), math.prod(token_grid(cfg, grid)))


def agreement(measured: FlopCount, analytic: FlopCount) -> dict[str, float]:
    """Measured / analytic total in %, and the worst component's relative deviation in %."""
    keys = set(measured.components) | set(analytic.components)
    worst = max(
        abs(measured.components.get(k, 0) - analytic.components.get(k, 0))
        / max(analytic.components.get(k, 0), 1)
        for k in keys
    )
    return {
        "measured_gflops": measured.total / 1e9,
        "analytic_gflops": analytic.total / 1e9,
        "agreement_percent": 100.0 * measured.total / analytic.total,
        "worst_component_deviation_percent": 100.0 * worst,
    }


# ---------------------------------------------------------------------- paper, Eq. 4
def eq3_complexity(n: int, d: int) -> Fraction:
    """Eq. 3: full self-attention, N^2 D for q k^T plus N^2 D for softmax(.) v (multiply-adds)."""
    return Fraction(2 * n * n * d)


def eq4_complexity(n: int, d: int, p: int) -> Fraction:
    """Eq. 4, first line, term by term; P = pf*ph*pw tokens per window (one proxy each)."""
    sa_proxies = 2 * Fraction(n * n, p * p) * d  # N/P proxies attend to each other
    cs_proxies = 2 * Fraction(n * n, p) * d  # N tokens attend to N/P proxies
    wsa_swsa = 4 * Fraction(n, p) * p * p * d  # N/P windows of P tokens, two attentions
    return sa_proxies + cs_proxies + wsa_swsa


def eq4_ratio(p: int, n: int) -> Fraction:
    """Eq. 4 / Eq. 3 = 1/P^2 + 1/P + 2P/N (D cancels)."""
    return eq4_complexity(n, 1, p) / eq3_complexity(n, 1)


@dataclass(frozen=True)
class PaperSetting:
    ratios: tuple[int, int, int]  # (pf, ph, pw)
    resolution: int  # pixels, square
    printed_tokens: int  # N as printed in Sec. 3.3
    quoted_percent: float  # "our method accounts for only ...% of the total self-attention"


PAPER_SETTINGS = (
    PaperSetting((1, 2, 2), 256, 256, 34.3),
    PaperSetting((1, 4, 4), 512, 1024, 9.7),
    PaperSetting((1, 8, 8), 1024, 4096, 4.7),
    PaperSetting((1, 16, 16), 2048, 16348, 2.3),  # 16348: a typo for 128*128 = 16384
)


def _one_decimal(percent: Fraction, truncate: bool) -> float:
    scaled = percent * 10
    return (math.floor(scaled) if truncate else math.floor(scaled + Fraction(1, 2))) / 10


def eq4_table(cfg: PTDiTConfig | None = None, measure: bool = True) -> list[dict]:
    """One row per paper setting: Eq. 4 at the true N and the printed N, the quote, whether they
    agree (rounded or truncated to one decimal), which paper ratio reproduces a quote that the
    row's own does not, and the same ratio from this model's counts (analytic, and measured
    with FlopCounterMode when `measure`) with windows set to the setting and with `cfg`'s own."""
    cfg = cfg or PTDiTConfig()
    rows = []
    for s in PAPER_SETTINGS:
        grid = latent_grid(s.resolution)
        p = math.prod(s.ratios)
        n = grid[0] * (grid[1] // cfg.patch_size) * (grid[2] // cfg.patch_size)
        pct = eq4_ratio(p, n) * 100
        rounded, truncated = _one_decimal(pct, False), _one_decimal(pct, True)
        if rounded == s.quoted_percent:
            status = "agrees"
        elif truncated == s.quoted_percent:
            status = "agrees when truncated"
        else:
            status = "disagrees"
        reproduced_by = [
            list(o.ratios)
            for o in PAPER_SETTINGS
            if s.quoted_percent
            in (_one_decimal(eq4_ratio(math.prod(o.ratios), n) * 100, t) for t in (False, True))
        ]
        at_setting = cfg.replace(compress_ratios=s.ratios, proxy_compress_ratios=s.ratios)
        row = {
            "ratios": list(s.ratios),
            "resolution": s.resolution,
            "tokens": n,
            "printed_tokens": s.printed_tokens,
            "eq4_percent": float(pct),
            "eq4_percent_printed_tokens": float(eq4_ratio(p, s.printed_tokens) * 100),
            "quoted_percent": s.quoted_percent,
            "eq4_rounded": rounded,
            "eq4_truncated": truncated,
            "status": status,
            "quote_reproduced_by": reproduced_by,
            "model_percent": 100 * attention_ratio(at_setting, grid),
            "model_window": list(cfg.window),
            "model_own_window_percent": _own_window_ratio(cfg, grid),
        }
        if measure:
            row["model_measured_percent"] = 100 * attention_ratio(at_setting, grid, measured=True)
        rows.append(row)
    return rows


def attention_ratio(cfg: PTDiTConfig, grid: tuple[int, int, int], measured: bool = False) -> float:
    """PT-DiT's visual attention products / the dense model's global ones (same width), per layer."""
    pt, dense = cfg.replace(num_layers=1), dense_config_equal_width(cfg).replace(num_layers=1)
    count = measure_flops if measured else model_flops
    return count(pt, grid).visual_attention / count(dense, grid).visual_attention


def _own_window_ratio(cfg: PTDiTConfig, grid: tuple[int, int, int]) -> float | None:
    try:
        return 100 * attention_ratio(cfg, grid)
    except ValueError:  # the grid does not split into cfg's windows
        return None


# -------------------------------------------------------------------------- report
def resolve_window(
    cfg: PTDiTConfig, resolution: int, grid: tuple[int, int, int], window: str | tuple[int, int, int]
) -> tuple[PTDiTConfig, str]:
    """The config to count at `resolution` and where its window came from.

    window: "schedule" (the paper's window for the resolution, `window_schedule`), "preset"
    (cfg's own) or an (f, h, w) tuple ("given"). A schedule or given window sets both
    compress_ratios and proxy_compress_ratios: one proxy per window, as in the paper and the release.
    """
    if window == "preset":
        return cfg, "preset"
    if window == "schedule":
        try:
            w = window_schedule(resolution, grid[0])
        except ValueError as err:
            raise ValueError(f"{err}; pass window='preset' or an explicit (f, h, w)") from err
        source = "schedule"
    else:
        w, source = tuple(int(v) for v in window), "given"
    return cfg.replace(compress_ratios=w, proxy_compress_ratios=w), source


def flops_report(
    cfg: PTDiTConfig,
    resolutions: list[int],
    frames: int = 1,
    batch: int = 1,
    text_len: int = DEFAULT_TEXT_LEN,
    window: str | tuple[int, int, int] = "schedule",
    temporal_compression: int = TEMPORAL_COMPRESSION,
    measure: bool = True,
) -> dict:
    """Everything `ptdit-export flops` prints, as a JSON-ready dict (GFLOPs)."""
    dense = {
        "dense-equal-width": dense_config_equal_width(cfg),
        "dense-equal-params": dense_config_equal_params(cfg),
    }
    settings = dict(frames=frames, batch=batch, text_len=text_len, window=str(window))
    report: dict = {
        "settings": settings | {"temporal_compression": temporal_compression},
        "models": {
            k: dict(parameters=count_parameters(c), layers=c.num_layers, hidden=c.hidden_size)
            for k, c in ({"pt-dit": cfg} | dense).items()
        },
        "resolutions": [],
    }
    counted_at: dict[int, dict[str, Config]] = {}  # resolution -> the configs counted there
    for res in resolutions:
        grid = latent_grid(res, frames, temporal_compression)
        pt_cfg, source = resolve_window(cfg, res, grid, window)
        try:
            counts = {"pt-dit": ptdit_flops(pt_cfg, grid, batch, text_len)}
        except ValueError as err:
            wf, tc = pt_cfg.window[0], temporal_compression
            k = max(1, grid[0] // wf)
            fits = [1 + tc * (wf * j - 1) for j in (k, k + 1)]
            raise ValueError(
                f"{res} px, {frames} frames -> latent {grid} with window {pt_cfg.window}: {err}. Latent "
                f"frames are 1 + (frames - 1) / {tc}; frames {fits[0]} or {fits[1]} fill the windows"
            ) from err
        counts |= {k: dense_flops(c, grid, batch, text_len) for k, c in dense.items()}
        counted_at[res] = {"pt-dit": pt_cfg} | dense
        pt, dense_w = counts["pt-dit"], counts["dense-equal-width"]
        report["resolutions"].append(
            {
                "resolution": res,
                "latent": list(grid),
                "tokens": pt.tokens,
                "window": list(pt_cfg.window),
                "window_source": source,
                "preset_window": list(cfg.window),
                "gflops": {k: c.gflops() for k, c in counts.items()},
                "total_gflops": {k: c.total / 1e9 for k, c in counts.items()},
                "attention_gflops": {k: c.visual_attention / 1e9 for k, c in counts.items()},
                "ratio_to_dense_equal_width": pt.total / dense_w.total,
                "ratio_to_dense_equal_params": pt.total / counts["dense-equal-params"].total,
                "attention_ratio": pt.visual_attention / dense_w.visual_attention,
            }
        )
    report["eq4"] = eq4_table(cfg, measure=measure)
    if measure and counted_at:
        smallest = min(counted_at)
        grid = latent_grid(smallest, frames, temporal_compression)
        report["measured"] = {
            "resolution": smallest,
            "method": "FlopCounterMode, meta device, math attention, 1 and 2 layers extended to full depth",
        }
        for k, c in counted_at[smallest].items():
            measured = measure_flops(c, grid, batch, text_len, reduced_depth=True)
            report["measured"][k] = agreement(measured, model_flops(c, grid, batch, text_len))
    return report


def _cell(value: float | None, fmt: str, width: int) -> str:
    return f"{'' if value is None else format(value, fmt):>{width}}"


def format_report(report: dict) -> str:
    """The report as plain-text tables."""
    names, s = list(report["models"]), report["settings"]
    out = [
        "models: "
        + "; ".join(
            f"{k} {m['parameters'] / 1e6:.1f}M params ({m['layers']} layers x {m['hidden']})"
            for k, m in report["models"].items()
        ),
        f"GFLOPs of one forward pass (multiply-add = 2, matmuls only), batch {s['batch']}, text length "
        f"{s['text_len']}, frames {s['frames']} (latent: 1 + (frames-1)/{s['temporal_compression']})",
    ]
    sources = {"schedule": "the paper's schedule", "preset": "the preset", "given": "--window"}
    for r in report["resolutions"]:
        out += [
            "",
            f"== {r['resolution']} px: latent {'x'.join(map(str, r['latent']))}, N = {r['tokens']} tokens, "
            f"window {tuple(r['window'])} from {sources[r['window_source']]} "
            f"(preset: {tuple(r['preset_window'])})",
            f"  {'component':<28}" + "".join(f"{n:>20}" for n in names),
        ]
        keys = sorted({k for g in r["gflops"].values() for k in g}, key=_component_order)
        for k in keys:
            out.append(f"  {k:<28}" + "".join(_cell(r["gflops"][n].get(k), ".3f", 20) for n in names))
        for label, key in (("total", "total_gflops"), ("visual attention", "attention_gflops")):
            out.append(f"  {label:<28}" + "".join(_cell(r[key][n], ".3f", 20) for n in names))
        out.append(
            f"  PT-DiT / dense equal width {100 * r['ratio_to_dense_equal_width']:.1f}%, "
            f"/ dense equal params {100 * r['ratio_to_dense_equal_params']:.1f}%; visual attention "
            f"/ dense global attention {100 * r['attention_ratio']:.2f}%"
        )
    out += ["", "Eq. 4 / Eq. 3 = 1/P^2 + 1/P + 2P/N (P = pf*ph*pw) vs the percentages quoted in Sec. 3.3"]
    out.append(
        f"  {'(pf,ph,pw)':<12}{'px':>5}{'N':>7}{'Eq.4 %':>9}{'quoted':>8}  {'status':<23}"
        f"{'model %':>9}{'counted %':>11}{'own window %':>14}"
    )
    for e in report["eq4"]:
        out.append(
            f"  {str(tuple(e['ratios'])):<12}{e['resolution']:>5}{e['tokens']:>7}{e['eq4_percent']:>9.3f}"
            f"{e['quoted_percent']:>8.1f}  {e['status']:<23}{e['model_percent']:>9.3f}"
            + _cell(e.get("model_measured_percent"), ".3f", 11)
            + _cell(e["model_own_window_percent"], ".3f", 14)
        )
        if e["printed_tokens"] != e["tokens"]:
            out.append(
                f"      the paper prints N = {e['printed_tokens']} (typo for {e['tokens']}): "
                f"Eq. 4 gives {e['eq4_percent_printed_tokens']:.3f}% there"
            )
        if e["status"] == "disagrees":
            others = [tuple(r) for r in e["quote_reproduced_by"]] or "no paper setting"
            out.append(f"      the quoted {e['quoted_percent']}% is Eq. 4 at this N for {others}")
    if report["eq4"]:
        out.append(
            "  model % / counted %: this model's attention products (analytic / FlopCounterMode) over "
            f"dense ones; own window: with {tuple(report['eq4'][0]['model_window'])} (blank: does not fit)"
        )
    if "measured" in report:
        meas = report["measured"]
        out += ["", f"measured vs analytic at {meas['resolution']} px ({meas['method']}):"]
        for k in names:
            a = meas[k]
            out.append(
                f"  {k:<20} measured {a['measured_gflops']:.4f} GFLOPs, analytic {a['analytic_gflops']:.4f}: "
                f"{a['agreement_percent']:.4f}% (worst component "
                f"{a['worst_component_deviation_percent']:.4f}% off)"
            )
    return "\n".join(out)


def _component_order(key: str) -> tuple[int, str]:
    order = ["linear.patch_embed", "linear.caption_projection", "linear.adaln", "linear.final"]
    return (order.index(key), key) if key in order else (len(order) + key.startswith("attention."), key)

"""Analytic bytes each rank sends: window sharding (ours) against Ulysses sequence parallelism.

Window sharding, per block, B samples, token grid (F, h, w), window (wf, wh, ww), S proxies per
window, nW windows, hidden D, e bytes per element, P ranks:

    proxies  all-gather of the local proxies       (P - 1) * B * (nW / P) * S * D * e
    halo     s = wh // 2 rows in and back           2 * B * F * s * w * D * e      (0 if s = 0)

Ulysses (DeepSpeed) shards the sequence and turns each attention's Q, K, V and output from
sequence- to head-sharded and back with all-to-alls; an all-to-all of T tokens sends
(P - 1) / P * B * (T / P) * D * e per rank. Per block, with N tokens and M = nW * S proxies:
window and shifted-window attention 4N each, proxy self-attention 4M, proxy cross-attention
2N (Q, O) + 2M (K, V), text cross-attention 2N (Q, O; the caption is on every rank, so each
rank projects its own heads' K, V): 12N + 6M tokens (8N + 6M without the shifted windows).

Run `python -m ptdit_export.parallel.traffic` for the table in docs/parallel.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from ptdit_export.model.config import PTDiTConfig


@dataclass(frozen=True)
class Traffic:
    proxies: int  # bytes per rank per block
    halo: int
    ulysses: int

    @property
    def ours(self) -> int:
        return self.proxies + self.halo


def per_block(
    cfg: PTDiTConfig, grid: tuple[int, int, int], parts: int, batch: int = 1, elem: int = 4
) -> Traffic:
    """Bytes one rank sends per block (grid in tokens (F, h, w))."""
    f, h, w = grid
    wf, wh, ww = cfg.window
    _, gh, gw = cfg.proxy_groups
    d = cfg.hidden_size
    n = f * h * w
    windows = (f // wf) * (h // wh) * (w // ww)
    m = windows * gh * gw  # proxies
    proxies = (parts - 1) * batch * (m // parts) * d * elem
    halo = 2 * batch * f * (wh // 2) * w * d * elem if cfg.shift_window and parts > 1 else 0
    tokens = (12 if cfg.shift_window else 8) * n + 6 * m
    ulysses = (parts - 1) * batch * tokens * d * elem // (parts * parts)
    return Traffic(proxies, halo, ulysses)


def table(model: str = "qihoo-t2x-1.1b", batch: int = 2, elem: int = 2) -> str:
    """Markdown table: the released width at 4,096 and 16,384 tokens, P = 2, 4, 8."""
    from ptdit_export.model.presets import load_config

    cfg = load_config(model)
    rows = [
        "| tokens (grid) | P | proxies | halo | ours per block | Ulysses per block | ours / Ulysses "
        "| ours per step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    mib = 1024 * 1024
    for side in (64, 128):
        for parts in (2, 4, 8):
            t = per_block(cfg, (1, side, side), parts, batch, elem)
            rows.append(
                f"| {side * side:,} ({side}x{side}) | {parts} | {t.proxies / mib:.3f} MiB | "
                f"{t.halo / mib:.3f} MiB | {t.ours / mib:.3f} MiB | {t.ulysses / mib:.2f} MiB | "
                f"{t.ours / t.ulysses:.3f} | {t.ours * cfg.num_layers / mib:.1f} MiB |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())

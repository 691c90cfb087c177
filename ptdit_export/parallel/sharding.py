"""The slab split: which token rows a rank owns, and what it needs from its neighbours.

The token grid (F, h, w) is cut along h into P equal slabs of whole window rows; rank r owns
rows [r * hs, (r + 1) * hs), hs = h / P, in every frame and every column. A rank's windows are
the global windows of its rows, in the single-process order (frame window, row window, column
window), so per block:

- window attention, proxy pooling, the MLP and the text cross-attention are local;
- the shifted grid (rolled by -window // 2 per axis) is local along frames and columns; along
  rows, rank r owns the shifted windows whose rolled rows are its own rows, i.e. original rows
  [r0 + s, r1 + s) mod h (s = window_h // 2): it takes s rows from rank r + 1 (`halo_in`) and,
  after the attention, hands the s rows it computed for rank r + 1 back (`halo_out`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ptdit_export.model import layout
from ptdit_export.model.embeddings import sincos_1d
from ptdit_export.parallel.comm import Comm


class ShardingError(ValueError):
    """The grid does not split into P slabs of whole window rows."""


def valid_parts(grid: tuple[int, int, int], window: tuple[int, int, int]) -> list[int]:
    """Every P that cuts the grid into equal slabs of whole window rows."""
    rows = grid[1] // window[1]
    return [p for p in range(1, rows + 1) if rows % p == 0]


@dataclass(frozen=True)
class SlabPlan:
    grid: tuple[int, int, int]  # (F, h, w) tokens of the whole latent
    window: tuple[int, int, int]
    rank: int
    world: int

    def __post_init__(self):
        f, h, w = self.grid
        wf, wh, ww = self.window
        if f % wf or h % wh or w % ww:
            raise ShardingError(
                f"the token grid {self.grid} is not a multiple of the window {self.window}; "
                "pick a latent size the window divides"
            )
        if (h // wh) % self.world:
            raise ShardingError(
                f"--parallel {self.world} cannot split {h // wh} window rows (token grid {f}x{h}x{w}, "
                f"window {wf}x{wh}x{ww}) into equal slabs; valid P for this size: "
                f"{', '.join(map(str, valid_parts(self.grid, self.window)))}"
            )

    @property
    def rows(self) -> int:  # token rows per rank
        return self.grid[1] // self.world

    @property
    def row0(self) -> int:
        return self.rank * self.rows

    @property
    def local_grid(self) -> tuple[int, int, int]:
        return (self.grid[0], self.rows, self.grid[2])

    @property
    def halo(self) -> int:  # rows the shifted window borrows from the next rank
        return self.window[1] // 2

    def window_ids(self, device=None) -> torch.Tensor:
        """Global index (within a sample) of each local window, in local order [nW_local]."""
        f, h, w = self.grid
        wf, wh, ww = self.window
        nf, nh, nw = f // wf, h // wh, w // ww
        fw = torch.arange(nf, device=device)[:, None, None]
        rw = torch.arange(self.row0 // wh, (self.row0 + self.rows) // wh, device=device)[None, :, None]
        cw = torch.arange(nw, device=device)[None, None, :]
        return (fw * nh * nw + rw * nw + cw).reshape(-1)

    def modulation_rows(self, batch: int, device=None) -> torch.Tensor:
        """The sample whose timestep each local (B nW_local) row takes: the release tiles the
        modulation with repeat(), so global row i = b * nW + window takes sample i mod B."""
        f, h, w = self.grid
        n_win = (f // self.window[0]) * (h // self.window[1]) * (w // self.window[2])
        rows = torch.arange(batch, device=device)[:, None] * n_win + self.window_ids(device)[None]
        return (rows % batch).reshape(-1)  # (B nW_local,)

    # ---------------------------------------------------------- tensors
    def slice_rows(self, x: torch.Tensor, dim: int, scale: int = 1) -> torch.Tensor:
        """This rank's slab of a full tensor whose `dim` has h * scale entries (scale: pixels per token)."""
        return x.narrow(dim, self.row0 * scale, self.rows * scale)

    def position_code(self, dim: int, scale: float, device=None) -> torch.Tensor:
        """The slab's rows of `embeddings.position_embedding_3d` [F, hs * w, dim] (fp64), computed
        for these tokens only: token k of the whole grid is coded (k mod h, k div h)."""
        f, h, w = self.grid
        spatial, temporal = 3 * dim // 4, dim // 4
        scale_t = torch.tensor(scale, dtype=torch.float32)
        k = torch.arange(self.row0 * w, (self.row0 + self.rows) * w, device=device)
        a = (k % h).float() / scale_t
        b = (k // h).float() / scale_t
        code_2d = torch.cat([sincos_1d(spatial // 2, a), sincos_1d(spatial // 2, b)], dim=1)
        code_t = sincos_1d(temporal, torch.arange(f, device=device).to(torch.float32))
        n = k.numel()
        return torch.cat(
            [code_t[:, None, :].expand(f, n, temporal), code_2d[None].expand(f, n, spatial)], dim=-1
        )

    def shift_bias(self, dtype: torch.dtype, device=None) -> torch.Tensor:
        """This rank's windows of `layout.shift_region_bias` [nW_local, N, N] (rolled frame)."""
        f, h, w = self.grid
        lf = layout._region_labels(f, self.window[0], device)
        lh = layout._region_labels(h, self.window[1], device)[self.row0 : self.row0 + self.rows]
        lw = layout._region_labels(w, self.window[2], device)
        labels = lf[:, None, None] * 9 + lh[None, :, None] * 3 + lw[None, None, :]  # (F, hs, w)
        labels = layout.grid_to_windows(labels[None, ..., None], self.window)[..., 0]  # (nW_local, N)
        differs = labels[:, None, :] != labels[:, :, None]
        return differs.to(dtype) * layout.MASK_VALUE

    # ------------------------------------------------------ shifted windows
    def to_shifted(self, x: torch.Tensor, comm: Comm) -> torch.Tensor:
        """Local windows [(B nW_l), N, C] -> this rank's shifted windows [(B nW_l), N, C]."""
        sf, s, sw = (k // 2 for k in self.window)
        g = layout.windows_to_grid(x, self.local_grid, self.window)  # (B, F, hs, w, C)
        if s:
            halo = comm.shift(g[:, :, :s], -1, "halo")  # rows [r1, r1 + s) from rank + 1
            g = torch.cat([g[:, :, s:], halo], dim=2)  # original rows [r0 + s, r1 + s)
        if sf or sw:
            g = torch.roll(g, shifts=(-sf, -sw), dims=(1, 3))
        return layout.grid_to_windows(g, self.window)

    def from_shifted(self, x: torch.Tensor, comm: Comm) -> torch.Tensor:
        """Inverse of `to_shifted`: shifted windows -> this rank's own windows."""
        sf, s, sw = (k // 2 for k in self.window)
        g = layout.windows_to_grid(x, self.local_grid, self.window)  # original rows [r0+s, r1+s)
        if sf or sw:
            g = torch.roll(g, shifts=(sf, sw), dims=(1, 3))
        if s:
            back = comm.shift(g[:, :, -s:], 1, "halo")  # rows [r0, r0 + s) from rank - 1
            g = torch.cat([back, g[:, :, :-s]], dim=2)
        return layout.grid_to_windows(g, self.window)

"""Per-stage wall-clock record of one generation, and the table printed at the end."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Timings:
    """Seconds. `loop` is the whole denoising loop; `transformer` holds each engine call."""

    text_encoder: float = 0.0
    transformer: list[float] = field(default_factory=list)
    loop: float = 0.0
    vae: float = 0.0
    total: float = 0.0

    @property
    def engine(self) -> float:
        return sum(self.transformer)

    @property
    def outside_engine(self) -> float:
        """Loop time spent outside the engine calls: sampler, guidance, copies, Python."""
        return max(self.loop - self.engine, 0.0)

    @property
    def outside_share(self) -> float:
        return self.outside_engine / self.loop if self.loop > 0 else 0.0

    def add(self, other: Timings) -> None:
        """Accumulate another chunk of the same call."""
        self.text_encoder += other.text_encoder
        self.transformer.extend(other.transformer)
        self.loop += other.loop
        self.vae += other.vae

    def table(self) -> str:
        rows = [
            ("text encoder", self.text_encoder),
            (f"transformer x {len(self.transformer)}", self.engine),
            ("sampler + copies", self.outside_engine),
            ("VAE decoder", self.vae),
        ]
        width = max(24, *(len(r[0]) + 2 for r in rows))
        rule = f"|{'-' * width}|{'-' * 14}|"
        lines = [rule, f"|{'Module':^{width}}|{'Latency':^14}|", rule]
        lines += [f"|{name:^{width}}|{seconds * 1e3:>10.2f} ms |" for name, seconds in rows]
        lines += [rule, f"|{'Pipeline':^{width}}|{self.total * 1e3:>10.2f} ms |", rule]
        return "\n".join(lines)

"""What ATC needs of the ONNX graph: operators its ONNX parser maps, and its shape options.

ATC (CANN's Ascend Tensor Compiler) looks each node up as `<domain>::<the model's opset for that
domain>::<op_type>` among its parser plugins (domain `ai.onnx` when empty, and then only when
the model imports exactly one opset), handles Constant itself and never expands ONNX local
functions. `check_atc_graph` checks a graph against `atc_ops.json`: CANN's own parser
registrations, with the repositories, tag and commits they were read from.

Shapes. ATC compiles one static shape, or with `--dynamic_dims` 2 to 100 profiles. How the
graph's inputs become ATC options (`atc_inputs`, exact):
    --input_shape lists every graph input in the ONNX input order; each dim is a number or -1.
    A dim is -1 when the ONNX dim is symbolic (dim_param) and the profiles give it more than one
    value; a symbolic dim with one value over all profiles is written as that value; a fixed ONNX
    dim must equal every profile's value.
    --dynamic_dims holds one group per profile (';'), each the values of the -1s in the order
    they appear in --input_shape (','). A quantity carried by several inputs (the batch is in all
    four) has one -1 per input, so it appears once per input in every group.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ptdit_export.export.artifacts import read_json

log = logging.getLogger(__name__)

ATC_OPS_FILE = Path(__file__).with_name("atc_ops.json")
MAX_OPSET = 18  # ATC parses ONNX opsets up to 18 (CANN 7+ documentation; the registrations agree)
PROFILES = (2, 100)  # --dynamic_dims takes 2 to 100 profiles
OLD_CANN_DIMS = 4  # CANN 6.x documented at most 4 -1s per profile; CANN 7 and later do not

# Engine-folder contract: the quantity each transformer input axis carries (None: fixed by the model).
AXES: dict[str, tuple[str | None, ...]] = {
    "hidden_states": ("batch", None, "frames", "latent_height", "latent_width"),
    "timestep": ("batch",),
    "encoder_hidden_states": ("batch", "text_len", None),
    "encoder_attention_mask": ("batch", "text_len"),
}


class AtcUnsupported(ValueError):
    """The graph cannot go to ATC as it is; the message names every reason and the fix."""


@dataclass(frozen=True)
class AtcShape:
    """One shape ATC compiles, in graph units: graph batch (CFG doubles prompts), latent sizes."""

    batch: int
    frames: int
    latent_height: int
    latent_width: int
    text_len: int

    def __post_init__(self) -> None:
        if min(dataclasses.astuple(self)) < 1:
            raise ValueError(f"every size of an ATC shape must be >= 1; got {self}")


@dataclass(frozen=True)
class AtcOps:
    cann_version: str
    opsets: dict[str, frozenset[int]]
    builtin: frozenset[str]

    def supports(self, op_type: str, opset: int) -> bool:
        return op_type in self.builtin or opset in self.opsets.get(op_type, ())


def _expand(ranges: str) -> frozenset[int]:
    out: set[int] = set()
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(out)


@functools.lru_cache(maxsize=4)
def load_atc_ops(path: str | Path = ATC_OPS_FILE) -> AtcOps:
    data = read_json(Path(path))
    return AtcOps(
        cann_version=data["cann_version"],
        opsets={op: _expand(v["opsets"]) for op, v in data["ops"].items()},
        builtin=frozenset(data.get("parser_builtin", ())),
    )


def _nodes(graph) -> Iterable:
    """Every node of a graph, subgraphs (If/Loop/Scan bodies) included."""
    import onnx

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _nodes(g)


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def domain_name(d: str) -> str:
    return "ai.onnx" if d in ("", "ai.onnx") else d


def check_atc_graph(model, ops: AtcOps | None = None, max_opset: int = MAX_OPSET) -> dict[str, int]:
    """Raise AtcUnsupported naming every node ATC cannot parse; return {op_type: count}.

    ATC resolves a node as `<domain>::<model opset of that domain>::<op_type>` (domain 'ai.onnx'
    when empty, and then only when the model imports exactly one opset), handles Constant itself,
    and never expands ONNX local functions.
    """
    ops = ops or load_atc_ops()
    problems: list[str] = []
    portable = "export the portable graph (--graph portable), which uses standard ONNX operators only"
    if model.functions:
        names = sorted({f"{f.domain}::{f.name}" for f in model.functions})
        problems.append(
            f"the graph carries ONNX local functions ({_names(names)}), which ATC's ONNX parser does not "
            f"expand: {portable}"
        )
    imports = {domain_name(o.domain): o.version for o in model.opset_import}
    opset = imports.get("ai.onnx")
    if opset is None:
        problems.append("the model imports no default-domain opset; export with --opset 18")
    elif opset > max_opset:
        problems.append(
            f"opset {opset}: ATC parses ONNX opsets up to {max_opset}; export with --opset {max_opset}"
        )
    custom: dict[str, list[str]] = {}
    unsupported: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for i, node in enumerate(_nodes(model.graph)):
        name = node.name or f"#{i}"
        domain = domain_name(node.domain)
        if domain != "ai.onnx":
            custom.setdefault(f"{domain}::{node.op_type}", []).append(name)
            continue
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
        if opset is not None and not ops.supports(node.op_type, opset):
            unsupported.setdefault(node.op_type, []).append(name)
    if custom:
        listed = "; ".join(f"{k} (nodes: {_names(v)})" for k, v in sorted(custom.items()))
        problems.append(f"custom-domain nodes ATC cannot parse: {listed}; {portable}")
    if len(model.opset_import) != 1:
        listed = ", ".join(f"{domain_name(o.domain)}:{o.version}" for o in model.opset_import)
        problems.append(
            f"the model imports {len(model.opset_import)} opsets ({listed}); ATC resolves nodes without a "
            "domain only when exactly one opset is imported: drop the others (prune_opset_imports) or "
            "export the portable graph"
        )
    if unsupported:
        listed = "; ".join(f"{op} (nodes: {_names(v)})" for op, v in sorted(unsupported.items()))
        problems.append(
            f"operators ATC does not map at opset {opset} (CANN {ops.cann_version} parser registrations, "
            f"{ATC_OPS_FILE.name}): {listed}"
        )
    if problems:
        raise AtcUnsupported("this graph cannot go to ATC:\n- " + "\n- ".join(problems))
    return dict(sorted(counts.items()))


def prune_opset_imports(model) -> list[str]:
    """Drop opset imports no node or function uses (ATC needs exactly one); returns the dropped ones."""
    used = {domain_name(n.domain) for n in _nodes(model.graph)}
    for f in model.functions:
        used.add(domain_name(f.domain))
        used.update(domain_name(n.domain) for n in f.node)
    imports = [(o.domain, o.version) for o in model.opset_import]
    keep = [(d, v) for d, v in imports if domain_name(d) in used or domain_name(d) == "ai.onnx"]
    dropped = [f"{domain_name(d)}:{v}" for d, v in imports if (d, v) not in keep]
    if dropped:
        del model.opset_import[:]
        for d, v in keep:
            model.opset_import.add(domain=d, version=v)
    return dropped


# ------------------------------------------------------------------------------ shapes


def graph_inputs(model) -> list[tuple[str, list[int | str | None]]]:
    """(name, dims) of the graph inputs in ONNX order: int (fixed), str (dim_param) or None (unknown)."""
    initializers = {t.name for t in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        dims: list[int | str | None] = []
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or None)
        out.append((vi.name, dims))
    return out


def static_problems(model) -> list[str]:
    """Graph inputs and outputs with a dim that is not a fixed number."""
    out = []
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for vi in values:
            dims = vi.type.tensor_type.shape.dim
            if not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
                shown = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
                out.append(f"{kind} {vi.name} {shown}")
    return out


@dataclass(frozen=True)
class AtcInputs:
    """What the graph's inputs and the shapes make of ATC's shape options."""

    input_shape: str  # --input_shape
    dynamic_dims: str | None  # --dynamic_dims (None: static)
    dynamic_axes: tuple[tuple[str, int, str], ...]  # (input, axis, quantity) of each -1, in order
    shapes: dict[str, tuple[int, ...]]  # the per-input shape with -1 where dynamic


def atc_inputs(
    inputs: Sequence[tuple[str, Sequence[int | str | None]]], shapes: Sequence[AtcShape]
) -> AtcInputs:
    """--input_shape and --dynamic_dims for these graph inputs and shapes (rules in the module doc)."""
    if not shapes:
        raise ValueError("no ATC shape given")
    entries: list[tuple[str, int, str]] = []
    per_input: dict[str, tuple[int, ...]] = {}
    symbols: dict[str, tuple[tuple[int, ...], str]] = {}
    problems: list[str] = []
    for name, dims in inputs:
        axes = AXES.get(name)
        if axes is None:
            raise AtcUnsupported(
                f"graph input {name!r} is not a transformer input ({', '.join(AXES)}); ATC shapes are "
                "derived from the engine-folder contract"
            )
        if len(dims) != len(axes):
            raise AtcUnsupported(f"graph input {name!r} has rank {len(dims)}; the contract says {len(axes)}")
        out: list[int] = []
        for axis, (dim, quantity) in enumerate(zip(dims, axes)):
            where = f"{name} axis {axis}" + (f" ({quantity})" if quantity else "")
            values = tuple(getattr(s, quantity) for s in shapes) if quantity else None
            if isinstance(dim, int):
                if values is not None and set(values) != {dim}:
                    problems.append(
                        f"{where} is fixed to {dim} in the ONNX graph but the shapes ask for "
                        f"{sorted(set(values))}: export with dynamic shapes or at that size"
                    )
                out.append(dim)
                continue
            if values is None:
                problems.append(f"{where} is dynamic ({dim!r}) in the graph; the contract fixes it")
                continue
            if isinstance(dim, str):
                m = re.fullmatch(r"(\d+)\*\w+", dim)
                if m and any(v % int(m.group(1)) for v in values):
                    problems.append(
                        f"{where} is {dim!r} in the graph: every size must be a multiple of {m.group(1)}"
                    )
                seen = symbols.setdefault(dim, (values, where))
                if seen[0] != values:
                    problems.append(
                        f"{where} and {seen[1]} are the same graph dimension {dim!r}: every shape must give "
                        f"them one value (got {list(values)} and {list(seen[0])})"
                    )
            if len(set(values)) == 1:
                out.append(values[0])
            else:
                out.append(-1)
                entries.append((name, axis, quantity))
        per_input[name] = tuple(out)
    missing = sorted(set(AXES) - set(per_input))
    if missing:
        problems.append(f"the graph lacks the transformer inputs {missing}")
    if problems:
        raise AtcUnsupported("the ATC shapes do not fit this graph:\n- " + "\n- ".join(problems))
    input_shape = ";".join(f"{n}:{','.join(str(d) for d in dims)}" for n, dims in per_input.items())
    if len(shapes) == 1:
        return AtcInputs(input_shape, None, (), per_input)
    if not PROFILES[0] <= len(shapes) <= PROFILES[1]:
        raise AtcUnsupported(
            f"--dynamic_dims takes {PROFILES[0]} to {PROFILES[1]} profiles; got {len(shapes)}"
        )
    if len(entries) > OLD_CANN_DIMS:
        log.warning(
            "%d dynamic dims per profile: CANN 6.x documented at most %d (CANN 7 and later do not limit it)",
            len(entries),
            OLD_CANN_DIMS,
        )
    dynamic_dims = ";".join(",".join(str(getattr(s, q)) for _, _, q in entries) for s in shapes)
    return AtcInputs(input_shape, dynamic_dims, tuple(entries), per_input)

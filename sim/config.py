"""Accelerator designs: YAML → validated frozen dataclasses. Every bad field is rejected with its
dotted path (e.g. `sram.activations.kib`), unknown fields included, so a typo never falls back to a
default silently. Units are in the field names (kib, bits, pj, mhz, nm).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATAFLOWS = ("weight_stationary", "output_stationary")
DRAINS = ("serial", "overlapped", "none")
WS_ROWS = ("fit_outputs", "all")
WEIGHT_KINDS = ("dense", "binary", "ternary", "slt")
GENERATOR_KINDS = ("hash", "xorshift", "lfsr")
CELLS = ("hp", "lstp")
PRESET_DIR = Path(__file__).resolve().parent / "presets"


class ConfigError(ValueError):
    """A config field is missing, unknown or out of range; the message starts with its path."""


def _num(path: str, v: Any, *, lo: float = 0.0, lo_open: bool = True, integer: bool = False,
         hi: float | None = None) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise ConfigError(f"{path}: expected {'an int' if integer else 'a number'}, got {v!r}")
    if not math.isfinite(v) or (v <= lo if lo_open else v < lo) or (hi is not None and v > hi):
        rng = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise ConfigError(f"{path}: expected a value {rng}, got {v!r}")
    return v


def _choice(path: str, v: Any, options: tuple[str, ...]) -> str:
    if v not in options:
        raise ConfigError(f"{path}: expected one of {list(options)}, got {v!r}")
    return v


@dataclass(frozen=True)
class ArrayConfig:
    rows: int = 64
    cols: int = 64
    act_bits: int = 8  # activation (input) precision
    psum_bits: int = 32  # accumulator precision (partial sums spilled to the output SRAM)
    # OS results leaving the PEs: "serial" shifts them out after each fold (+R cycles a fold);
    # "overlapped" hides that drain behind the next fold's fill (+R once a layer); "none" reads
    # each PE as it finishes (SCALE-Sim's count).
    drain: str = "serial"

    def validate(self, p: str) -> None:
        for f in ("rows", "cols"):
            _num(f"{p}.{f}", getattr(self, f), integer=True, hi=4096)
        for f in ("act_bits", "psum_bits"):
            _num(f"{p}.{f}", getattr(self, f), integer=True, hi=64)
        _choice(f"{p}.drain", self.drain, DRAINS)

    @property
    def pes(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class SramConfig:
    kib: float
    banks: int = 1
    word_bits: int = 64
    double_buffered: bool = True

    def validate(self, p: str) -> None:
        _num(f"{p}.kib", self.kib)
        _num(f"{p}.banks", self.banks, integer=True)
        _num(f"{p}.word_bits", self.word_bits, integer=True, hi=4096)
        if not isinstance(self.double_buffered, bool):
            raise ConfigError(f"{p}.double_buffered: expected true or false, got {self.double_buffered!r}")

    @property
    def bits(self) -> int:
        return int(self.kib * 8192)

    @property
    def usable_bits(self) -> int:
        """Bits one tile may occupy: half the SRAM when the next tile is prefetched into the other half."""
        return self.bits // 2 if self.double_buffered else self.bits

    @property
    def bits_per_cycle(self) -> int:
        return self.banks * self.word_bits


@dataclass(frozen=True)
class SramsConfig:
    activations: SramConfig = field(default_factory=lambda: SramConfig(256))
    weights: SramConfig = field(default_factory=lambda: SramConfig(128))  # weights, or masks in an SLT design
    outputs: SramConfig = field(default_factory=lambda: SramConfig(128))
    cell: str = "hp"  # CACTI cell type: hp (fast, leaky) or lstp (low standby power)

    def validate(self, p: str) -> None:
        for f in ("activations", "weights", "outputs"):
            getattr(self, f).validate(f"{p}.{f}")
        _choice(f"{p}.cell", self.cell, CELLS)


@dataclass(frozen=True)
class DramConfig:
    bytes_per_cycle: float = 16.0
    pj_per_bit: float = 8.0  # LPDDR4 (REFERENCE.md §5.3, Accelergy CACTI plug-in)

    def validate(self, p: str) -> None:
        _num(f"{p}.bytes_per_cycle", self.bytes_per_cycle)
        _num(f"{p}.pj_per_bit", self.pj_per_bit)


@dataclass(frozen=True)
class WeightsConfig:
    kind: str = "dense"  # dense | binary | ternary | slt
    bits: int = 8  # stored bits per weight of a dense design (binary 1, ternary 2 are implied)
    dist: str = "signed_constant"  # SLT random-weight distribution (sets generator bits per weight)

    def validate(self, p: str) -> None:
        _choice(f"{p}.kind", self.kind, WEIGHT_KINDS)
        _num(f"{p}.bits", self.bits, integer=True, hi=32)
        _choice(f"{p}.dist", self.dist, ("signed_constant", "uniform", "normal"))

    @property
    def stored_bits(self) -> int:
        return {"dense": self.bits, "binary": 1, "ternary": 2, "slt": 0}[self.kind]


@dataclass(frozen=True)
class GeneratorConfig:
    kind: str = "hash"
    units: int = 4  # generator instances
    bits_per_step: int = 32  # random bits one unit yields per cycle
    pj_per_step: float | None = None  # at 45 nm; None = energy.py's figure for `kind` and bits_per_step
    fanout: int = 1  # output-row folds one generated weight serves by broadcast (1 = none)

    def validate(self, p: str) -> None:
        _choice(f"{p}.kind", self.kind, GENERATOR_KINDS)
        _num(f"{p}.units", self.units, integer=True)
        _num(f"{p}.bits_per_step", self.bits_per_step, integer=True, hi=4096)
        if self.pj_per_step is not None:
            _num(f"{p}.pj_per_step", self.pj_per_step, lo_open=False)
        _num(f"{p}.fanout", self.fanout, integer=True)

    def weights_per_cycle(self, bits_per_weight: int) -> float:
        return self.units * self.bits_per_step / bits_per_weight


@dataclass(frozen=True)
class MaskMemoryConfig:
    """Mask bits per weight for each format; null = the format's exact size from the workload
    (binary 1, multicoat 1 + Σ_{i<K} density_i, frozen = free fraction)."""

    binary: float | None = None
    multicoat: float | None = None
    frozen: float | None = None

    def validate(self, p: str) -> None:
        for f in ("binary", "multicoat", "frozen"):
            v = getattr(self, f)
            if v is not None:
                _num(f"{p}.{f}", v, lo_open=False, hi=64)


@dataclass(frozen=True)
class MappingConfig:
    """Loop-nest choices. ws_rows: how many activation rows a weight-stationary fold streams:
    "fit_outputs" = as many as the usable output SRAM holds partial sums for (they never leave the
    chip); "all" = every row, each k-fold's partial sums written to DRAM and read back for the next
    (SCALE-Sim's mapping and its count of output writes)."""

    ws_rows: str = "fit_outputs"

    def validate(self, p: str) -> None:
        _choice(f"{p}.ws_rows", self.ws_rows, WS_ROWS)


@dataclass(frozen=True)
class Design:
    name: str
    array: ArrayConfig = field(default_factory=ArrayConfig)
    dataflow: str = "output_stationary"
    sram: SramsConfig = field(default_factory=SramsConfig)
    dram: DramConfig = field(default_factory=DramConfig)
    clock_mhz: float = 200.0
    node_nm: float = 45.0
    vdd: float = 0.9
    logic_leak_uw_per_pe: float = 0.0  # PE logic leakage (not in the cited tables; 0 unless given)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    generator: GeneratorConfig | None = None  # SLT designs only
    mask_memory: MaskMemoryConfig = field(default_factory=MaskMemoryConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name: expected a non-empty string, got {self.name!r}")
        self.array.validate("array")
        _choice("dataflow", self.dataflow, DATAFLOWS)
        self.sram.validate("sram")
        self.dram.validate("dram")
        _num("clock_mhz", self.clock_mhz)
        _num("node_nm", self.node_nm, hi=1000)
        _num("vdd", self.vdd, hi=5)
        _num("logic_leak_uw_per_pe", self.logic_leak_uw_per_pe, lo_open=False)
        self.weights.validate("weights")
        if self.weights.kind == "slt":
            if self.generator is None:
                raise ConfigError("generator: an SLT design (weights.kind = slt) needs a weight generator")
            self.generator.validate("generator")
        elif self.generator is not None:
            raise ConfigError(f"generator: only SLT designs generate weights, this one is {self.weights.kind}")
        self.mask_memory.validate("mask_memory")
        self.mapping.validate("mapping")

    @property
    def is_slt(self) -> bool:
        return self.weights.kind == "slt"

    def replace(self, updates: dict[str, Any]) -> Design:
        """A copy with dotted fields changed (`{"array.rows": 32}`), validated like a file."""
        raw = to_dict(self)
        for path, v in updates.items():
            node = raw
            parts = path.split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"{path}: no such config section {part!r}")
                node = node[part]
            if parts[-1] not in node:
                raise ConfigError(f"{path}: no such config field")
            node[parts[-1]] = v
        return from_dict(raw)


_SECTIONS = {"array": ArrayConfig, "sram": SramsConfig, "dram": DramConfig, "weights": WeightsConfig,
             "generator": GeneratorConfig, "mask_memory": MaskMemoryConfig, "mapping": MappingConfig}


def _build(cls, raw: Any, path: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'design'}: expected a mapping, got {type(raw).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown field (expected one of {sorted(names)})")
    kw = {}
    for k, v in raw.items():
        sub = f"{path}.{k}" if path else k
        if cls is SramsConfig and k != "cell":
            kw[k] = _build(SramConfig, v, sub)
        elif cls is Design and k in _SECTIONS and v is not None:
            kw[k] = _build(_SECTIONS[k], v, sub)
        else:
            kw[k] = v
    if cls is SramConfig and "kib" not in kw:
        raise ConfigError(f"{path}.kib: required")
    return cls(**kw)


def from_dict(raw: dict) -> Design:
    return _build(Design, raw, "")


def to_dict(design: Design) -> dict:
    return dataclasses.asdict(design)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: Path) -> Any:
    """YAML as data; a syntax error or an unreadable file is one ConfigError naming the file."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(e, 'problem', None) or e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e.__class__.__name__})") from None


def load_design(spec: str | Path, _seen: tuple = ()) -> Design:
    """A preset name (sim/presets/<name>.yaml) or a YAML file path. A file may start from another
    design with `base: <preset or path>`; its fields override the base's, section by section."""
    return from_dict(_raw_design(spec, _seen))


def _raw_design(spec: str | Path, seen: tuple = ()) -> dict:
    path = Path(spec)
    if not path.suffix and (PRESET_DIR / f"{spec}.yaml").exists():
        path = PRESET_DIR / f"{spec}.yaml"
    if not path.is_file():
        raise ConfigError(f"design: {str(spec)!r} is neither a preset {presets()} nor an existing YAML file")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of design fields, got {type(raw).__name__}")
    if "base" in raw:
        base = raw.pop("base")
        if not isinstance(base, str) or not base:
            raise ConfigError(f"base: expected a preset name or YAML path, got {base!r}")
        if path.resolve() in seen:
            raise ConfigError(f"base: {base!r} includes itself")
        rel = path.parent / base
        try:
            parent = _raw_design(rel if rel.is_file() else base, (*seen, path.resolve()))
        except ConfigError as e:
            raise ConfigError(f"base: {e}") from None
        raw = _merge(parent, raw)
    return raw


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))

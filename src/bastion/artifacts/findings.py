"""What an artifact scan reports: one :class:`Finding` per problem, one :class:`ArtifactScan` per file."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

#: How bad a finding is. ``high`` and ``critical`` make a file unsafe.
Severity = Literal["critical", "high", "medium", "low", "info"]

#: What a finding is about.
FindingKind = Literal[
    "dangerous_import",  # the file imports a callable that runs commands, code, I/O or network (denylist)
    "unknown_import",  # an import outside both lists: review it before loading the file
    "unresolved_import",  # an import whose name is computed at load time, so it cannot be checked
    "dangerous_opcode",  # a call or attribute write that clean model files never make
    "malformed",  # a stream or header that does not parse (truncated, corrupt, or crafted)
    "nested_archive",  # an archive inside an archive (or one too deep to scan)
    "too_large",  # the scan stopped at the byte budget (zip bomb guard)
    "unknown_format",  # not a recognised model format: nothing was checked
    "not_checked",  # content this scanner does not analyse (TorchScript code: info; an lz4 stream: high)
]

#: Severities from worst to mildest; ``SEVERITY_RANK[s]`` sorts findings worst first.
SEVERITY_RANK: dict[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
UNSAFE_SEVERITIES = frozenset({"critical", "high"})


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Finding(_Record):
    """One problem in a scanned file, with where it is."""

    severity: Severity
    kind: FindingKind
    message: str
    members: list[str] = Field(
        default_factory=list,
        description="archive members from the file inward to the stream that holds the finding; empty: the file",
    )
    offset: int | None = Field(default=None, description="byte offset of the opcode or header in that stream")
    symbol: str | None = Field(default=None, description="the imported callable, as module.name, if any")

    @property
    def location(self) -> str:
        """``member > member @ offset`` (``<file>`` for the file itself)."""
        where = " > ".join(self.members) or "<file>"
        return where if self.offset is None else f"{where} @ {self.offset}"


class ArtifactScan(_Record):
    """The result of scanning one model file. ``safe`` when no finding is ``high`` or ``critical``."""

    path: str
    format: str = Field(description="pickle, joblib, torch-legacy, torch-zip, torchscript, zip, npy, npz, "
                        "safetensors, skops, lz4, empty or unknown; a compressed file is e.g. gzip+joblib")
    sha256: str
    size: int = Field(description="bytes in the file")
    findings: list[Finding] = Field(default_factory=list, description="worst first")
    imports: list[str] = Field(default_factory=list, description="every callable the pickles import, "
                               "allowed ones included, as module.name")

    @model_validator(mode="before")
    @classmethod
    def _derive_verdict(cls, data: Any) -> Any:
        """``verdict`` follows from the findings: a saved record's copy is dropped, not trusted."""
        if isinstance(data, dict) and "verdict" in data:
            return {key: value for key, value in data.items() if key != "verdict"}
        return data

    @property
    def safe(self) -> bool:
        """No finding of severity ``high`` or ``critical``."""
        return not any(f.severity in UNSAFE_SEVERITIES for f in self.findings)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verdict(self) -> Literal["safe", "unsafe"]:
        """``"unsafe"`` when a finding is ``high`` or ``critical``; do not load such a file."""
        return "safe" if self.safe else "unsafe"

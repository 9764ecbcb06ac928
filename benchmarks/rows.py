"""One report row per artifact, as a typed record: the run fills it through return values
(the export's meta, the validation's fidelity, the harness's metrics, the fallback's
section) and the report takes its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "failed", "skipped"]


@dataclass
class ArtifactRow:
    target: str
    label: str
    precision: str                               # "fp32" | "fp16" | "int8"
    intent: dict[str, Any] | None = None         # the quantization variant as the recipe states it
    status: Status = "ok"
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    file: str | None = None                      # relative to the run directory
    export: dict[str, Any] | None = None         # the artifact's meta
    fidelity: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    fallback: dict[str, Any] | None = None
    device: str = "local"                        # where it was measured (an inventory name)

    @property
    def name(self) -> str:
        return f"{self.target}/{self.label}" if self.device == "local" else f"{self.device}:{self.target}/{self.label}"

    def fail(self, status: Status, error: str) -> None:
        """The row did not make it: no file is left under its name."""
        self.status, self.error, self.file = status, error, None

    def to_json(self) -> dict[str, Any]:
        """The report's form: optional sections appear only when the run got that far."""
        out: dict[str, Any] = {"name": self.name, "target": self.target, "label": self.label,
                               "precision": self.precision, "intent": self.intent, "status": self.status,
                               "notes": list(self.notes)}
        if self.device != "local":
            out["device"] = self.device
        for key in ("error", "file", "export", "fidelity", "metrics", "fallback"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

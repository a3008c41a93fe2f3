"""What `ragtune health` reports: findings (each with a severity, the evidence and what to do) and the measurements
behind them, in one report that the terminal, JSON, the HTML dashboard and `/v1/monitoring` all show."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SEVERITIES = ("info", "warning", "error")  # in rising order
AREAS = ("content", "freshness", "consistency", "coverage", "drift", "traffic")
EXAMPLES = 10  # examples listed per finding


@dataclass
class Finding:
    """One thing health found: `check` names the test that found it, `evidence` holds its numbers and `examples`
    the documents, chunks or questions concerned (at most EXAMPLES)."""

    area: str
    check: str
    severity: str
    title: str
    action: str
    evidence: dict = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES or self.area not in AREAS:
            raise ValueError(f"unknown severity {self.severity!r} or area {self.area!r}")
        self.examples = [str(example) for example in self.examples[:EXAMPLES]]


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass
class HealthReport:
    """Findings, measurements per area (`metrics`) and time series ([[unix time, value], ...]) for the plots."""

    project: str
    generated_at: float
    counts: dict
    findings: list[Finding] = field(default_factory=list)
    metrics: dict[str, dict] = field(default_factory=dict)
    series: dict[str, list[list[float]]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The most severe finding's severity, or "ok"."""
        worst = max((severity_rank(f.severity) for f in self.findings), default=-1)
        return SEVERITIES[worst] if worst >= 0 else "ok"

    def at_least(self, severity: str) -> list[Finding]:
        """The findings of `severity` or worse."""
        return [f for f in self.findings if severity_rank(f.severity) >= severity_rank(severity)]

    def to_dict(self) -> dict:
        findings = sorted(self.findings, key=lambda f: (-severity_rank(f.severity), AREAS.index(f.area)))
        return {"project": self.project, "generated_at": self.generated_at, "status": self.status,
                "counts": self.counts, "findings": [asdict(f) for f in findings], "metrics": self.metrics,
                "series": self.series}

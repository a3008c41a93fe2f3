"""What data preparation did to every row: counts, removals with reasons, duplicates, leakage, mixture."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field


@dataclass
class DataReport:
    """The account of one `prepare_data` run.

    `stages` counts rows after each step; `splits` the rows per split (`train_weighted` after mixture
    weights); `sources` has one entry per dataset; `removed` every dropped row (`origin`, `reason`, optional
    `detail`); `duplicates` names the row each duplicate repeated; `leakage` the val/test rows that repeat a
    train row; `lengths` token-length stats; `mixture` the weighted train rows per task.
    """

    objective: str
    options: dict
    stages: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    sources: list[dict] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    leakage: list[dict] = field(default_factory=list)
    lengths: dict[str, int] = field(default_factory=dict)
    mixture: dict[str, int] = field(default_factory=dict)
    raft_gold: dict[str, int] = field(default_factory=dict)  # how each RAFT row's gold passage was chosen
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def removal_reasons(self) -> dict[str, int]:
        """Removed rows per reason, most frequent first."""
        return dict(Counter(row["reason"] for row in self.removed).most_common())

    def removal_summary(self, examples: int = 3) -> str | None:
        """One line on the removed rows (per reason, the first few with file and line), None when none was."""
        if not self.removed:
            return None
        reasons = ", ".join(f"{reason}: {count}" for reason, count in self.removal_reasons().items())
        first = "; ".join(f"{row['origin']} {row['reason']}" + (f" ({row['detail']})" if row.get("detail") else "")
                          for row in self.removed[:examples])
        return (f"{len(self.removed)} of {self.stages.get('loaded', '?')} rows removed while cleaning ({reasons}): "
                f"{first}{'; ...' if len(self.removed) > examples else ''}; every row is listed in data/report.md")

    def to_markdown(self) -> str:
        """A human-readable report (written as report.md next to the data)."""
        lines = [f"# Training data ({self.objective})", "", "## Rows", "", "| step | rows |", "|---|---|"]
        lines += [f"| {stage} | {count} |" for stage, count in {**self.stages, **self.splits}.items()]
        lines += ["", "## Sources", "", "| dataset | task | weight | split | loaded | removed | kept |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {s['path']} | {s['task']} | {s['weight']:g} | {s['split']} | {s['loaded']} | {s['removed']} | "
                  f"{s['kept']} |" for s in self.sources]
        if self.lengths:
            lines += ["", "## Length (tokens)", "", ", ".join(f"{key} {value}" for key, value in self.lengths.items())]
        if self.mixture:
            lines += ["", "## Mixture (train rows per task after weighting)", ""]
            lines += [f"- {task}: {count}" for task, count in self.mixture.items()]
        if self.raft_gold:
            lines += ["", "## RAFT gold passage chosen by", "", "| how | rows |", "|---|---|"]
            lines += [f"| {how} | {count} |" for how, count in self.raft_gold.items() if count]
        if self.removed:
            lines += ["", "## Removed rows", "", "| reason | rows |", "|---|---|"]
            lines += [f"| {reason} | {count} |" for reason, count in self.removal_reasons().items()]
            lines += [""] + [f"- `{row['origin']}`: {row['reason']}"
                             + (f" ({row['detail']})" if row.get("detail") else "") for row in self.removed]
        if self.leakage:
            lines += ["", "## Leakage (val/test rows repeating a train row)", ""]
            lines += [f"- `{row['origin']}` ({row['split']}) {row['kind']} duplicate of train `{row['train_origin']}`: "
                      f"{row['action']}" for row in self.leakage]
        if self.warnings:
            lines += ["", "## Warnings", ""] + [f"- {warning}" for warning in self.warnings]
        return "\n".join(lines) + "\n"

"""Question sets from documents, offline: sample chunks, write questions, check every item, split, report."""

from ragtune.synthesis.run import SynthesisOptions, SynthesisResult, synthesize

__all__ = ["SynthesisOptions", "SynthesisResult", "synthesize"]

"""Evaluation: answer-quality metrics, runners over test sets, comparison and reports."""

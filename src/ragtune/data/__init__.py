"""Training data for fine-tuning: formats, cleaning, splits, RAFT passages, mixtures and token encoding."""

from ragtune.data.encoding import TrainingCollator, encode_examples, encode_texts, pack_sequences, token_length
from ragtune.data.examples import Example
from ragtune.data.prepare import (PreparedData, PrepareOptions, is_prepared_dir, prepare_data, read_prepared,
                                  write_prepared)
from ragtune.data.report import DataReport
from ragtune.data.sources import DatasetSpec, load_examples, parse_dataset_spec

__all__ = [
    "DataReport", "DatasetSpec", "Example", "PrepareOptions", "PreparedData", "TrainingCollator", "encode_examples",
    "encode_texts", "is_prepared_dir", "load_examples", "pack_sequences", "parse_dataset_spec", "prepare_data",
    "read_prepared", "token_length", "write_prepared",
]

"""Tiny randomly initialised Llama models with a byte-level BPE tokenizer, saved like a local Hugging Face folder.

Byte-level BPE encodes any text, so tests can feed these models real data; the ChatML template mirrors
SmolLM2's, so prompt masking and chat formatting run the same code path as on the packaged model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TRAINING_TEXT = [
    "the cat sat on the mat and the dog slept. what is the capital of france? paris is the capital.",
    "mars is the fourth planet; the moon orbits the earth every 27.3 days. question answer context passages",
    "system user assistant: answer the question using only the numbered passages [1] [2] [3].",
    "Cats need taurine, an amino acid found in meat. Dogs were domesticated from wolves.",
]


def build_tiny_llama(folder: Path, *, layers: int = 2, hidden: int = 32, chat_template: bool = True,
                     tie_word_embeddings: bool = False, seed: int = 0) -> Path:
    """Save a `layers`-block, `hidden`-wide Llama and its tokenizer to `folder`; returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(TRAINING_TEXT * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>" if chat_template
                                   else "<|endoftext|>", pad_token="<|endoftext|>", bos_token=None)
    if chat_template:
        fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, initializer_range=0.1,
                         pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id, bos_token_id=None,
                         tie_word_embeddings=tie_word_embeddings)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def build_tiny_sentence_transformer(folder: Path, *, pooling: str = "mean", hidden: int = 32, seed: int = 0) -> Path:
    """Save a 2-layer random BERT with a WordPiece tokenizer as a sentence-transformers folder (transformer,
    `pooling`, normalize); returns `folder`."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    from tokenizers import normalizers, processors
    from transformers import BertConfig, BertModel

    bert_dir = folder.parent / f"{folder.name}-bert"
    bert_dir.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(TRAINING_TEXT * 4, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", tokenizer.token_to_id("[SEP]")),
                                                         ("[CLS]", tokenizer.token_to_id("[CLS]")))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=128).save_pretrained(bert_dir)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=hidden * 2, max_position_embeddings=128)
    BertModel(config).save_pretrained(bert_dir)
    transformer = st_models.Transformer(str(bert_dir), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, st_models.Pooling(hidden, pooling_mode=pooling),
                                         st_models.Normalize()], device="cpu")
    model.save(str(folder))
    return folder

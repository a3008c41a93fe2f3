"""ragtune: build RAG and fine-tuned models on your own documents and compare them."""

__version__ = "0.1.0"

"""Fine-tuning: methods, recipes, the training loop, run directories and exports for llama.cpp."""

"""Adapters and models -> GGUF for llama.cpp: LoRA adapters, merged models, quantization, parity checks."""

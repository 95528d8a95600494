"""Training backends (hf, unsloth, tinker) sharing one config, one dataset pipeline and one prompt renderer."""

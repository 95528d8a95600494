"""The bottom inference layer: the llama.cpp engine, grammar, model resolver, options table and analyzer."""

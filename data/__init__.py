"""Data stage: the prompt renderer and chat formats every other stage shares, and (later) dataset tools."""

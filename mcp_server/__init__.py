"""Serving stage: the llama.cpp engine, the analyzer, the newsletter splitter and the MCP server."""

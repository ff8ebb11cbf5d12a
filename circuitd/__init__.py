"""circuitd: an LLM gateway daemon."""

__version__ = "0.1.0"

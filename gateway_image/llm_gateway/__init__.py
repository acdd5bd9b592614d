"""An OpenAI-compatible gateway in front of vLLM and OpenAI-compatible APIs."""

__version__ = "0.1.0"

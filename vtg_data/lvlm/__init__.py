"""Inference backends behind one interface (``InferenceBackend``) and the tiny offline model."""

from vtg_data.lvlm.base import (
    BackendIdentity,
    GenerationParams,
    InferenceBackend,
    Request,
    Response,
    backend_notes,
)

BACKENDS = ("hf", "openai", "vllm", "gemini")


def make_backend(name: str, model: str, **options) -> InferenceBackend:
    """Build a backend by name; heavy imports happen only for the one asked for."""
    if name == "hf":
        from vtg_data.lvlm.hf import HFBackend

        return HFBackend(model, **options)
    if name == "openai":
        from vtg_data.lvlm.openai_http import OpenAIBackend

        return OpenAIBackend(model, **options)
    if name == "vllm":
        from vtg_data.lvlm.vllm_engine import VLLMBackend

        return VLLMBackend(model, **options)
    if name == "gemini":
        from vtg_data.lvlm.gemini import GeminiBackend

        return GeminiBackend(model, **options)
    raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")


__all__ = [
    "BACKENDS",
    "BackendIdentity",
    "GenerationParams",
    "InferenceBackend",
    "Request",
    "Response",
    "make_backend",
    "backend_notes",
]

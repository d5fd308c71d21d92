"""The service layer the front ends (ui/, api/, cli/) share: what the app does, without Gradio or HTTP."""

from service.rag_service import RagService
from service.uploads import NAME_MAX_BYTES, Upload

__all__ = ["NAME_MAX_BYTES", "RagService", "Upload"]

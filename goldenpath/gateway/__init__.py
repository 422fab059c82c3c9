"""The OpenAI-compatible gateway (an ASGI application)."""

from goldenpath.gateway._app import Gateway
from goldenpath.gateway._errors import APIError

__all__ = ["APIError", "Gateway"]

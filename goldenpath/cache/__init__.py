"""Response caching per tenant: exact answers by request hash, and chat answers to close paraphrases."""

from goldenpath.cache._cache import CacheHit, Embedder, ResponseCache
from goldenpath.cache._stream import StreamAssembler, completion_to_events

__all__ = ["CacheHit", "Embedder", "ResponseCache", "StreamAssembler", "completion_to_events"]

"""Tenancy: principals and API keys (hashed at rest)."""

from goldenpath.tenancy._keys import (
    ADMIN_KEY_ID,
    KeyRing,
    Principal,
    generate_key,
    load_server_secret,
)

__all__ = ["ADMIN_KEY_ID", "KeyRing", "Principal", "generate_key", "load_server_secret"]

"""The ``/admin`` API: tenants, keys and usage, for keys with the admin flag."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from goldenpath.gateway._errors import APIError, invalid_request
from goldenpath.gateway._validation import parse_json, validate
from goldenpath.store import StoreError
from goldenpath.tenancy import (
    KeySpec,
    NewKey,
    Principal,
    TenantSpec,
    create_key,
    create_tenant,
    key_view,
    tenant_view,
    usage_view,
)

if TYPE_CHECKING:
    from goldenpath.gateway._app import Gateway, Receive, Scope, Send

_JSON = (b"content-type", b"application/json")


def _store_error(exc: StoreError) -> APIError:
    text = str(exc)
    if "already exists" in text:
        return APIError(409, text, code="already_exists")
    if text.startswith("no active key"):
        return APIError(404, text, code="key_not_found")
    return invalid_request(text, code="invalid_value")


def parse_time(value: str, param: str) -> float:
    """A Unix time or an ISO date/datetime (UTC unless it says otherwise)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise invalid_request(f"'{param}' must be an ISO date (2026-11-01) or a Unix time.", param=param) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


class AdminAPI:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def handle(self, scope: Scope, receive: Receive, send: Send, principal: Principal, rid: str) -> None:
        if not principal.is_admin:
            raise APIError(403, "This API key is not an admin key.", code="admin_required")
        method: str = scope["method"]
        parts = scope["path"].strip("/").split("/")[1:]
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        status, result = await self._dispatch(method, parts, query, scope, receive)
        await send(
            {"type": "http.response.start", "status": status, "headers": [_JSON, (b"x-request-id", rid.encode())]}
        )
        await send({"type": "http.response.body", "body": orjson.dumps(result)})

    async def _json(self, scope: Scope, receive: Receive) -> Any:
        return parse_json(await self.gw._read_body(scope, receive) or b"{}")

    async def _changed(self) -> None:
        await asyncio.to_thread(self.gw.keys.refresh)
        self.gw.governance.forget_cached()
        await self.gw.governance.seed_budgets()

    async def _dispatch(
        self, method: str, parts: list[str], query: dict[str, str], scope: Scope, receive: Receive
    ) -> tuple[int, Any]:
        store, keys = self.gw.store, self.gw.keys
        try:
            match method, parts:
                case "GET", ["tenants"]:
                    tenants = await asyncio.to_thread(store.list_tenants)
                    return 200, {"object": "list", "data": [tenant_view(t) for t in tenants]}
                case "POST", ["tenants"]:
                    body = await self._json(scope, receive)
                    validate(TenantSpec, body)
                    tenant = await asyncio.to_thread(create_tenant, store, TenantSpec.model_validate(body))
                    await self._changed()
                    return 201, tenant_view(tenant)
                case "GET", ["keys"]:
                    stored = await asyncio.to_thread(
                        store.list_keys, query.get("tenant"), include_revoked=query.get("include_revoked") == "true"
                    )
                    return 200, {"object": "list", "data": [key_view(k) for k in stored]}
                case "POST", ["keys"]:
                    body = await self._json(scope, receive)
                    validate(KeySpec, body)
                    spec = KeySpec.model_validate(body)
                    try:
                        new = await asyncio.to_thread(create_key, keys, spec, set(self.gw.router.routes))
                    except ValueError as exc:
                        raise invalid_request(str(exc), param="models") from None
                    await self._changed()
                    return 201, _new_key(new)
                case "POST", ["keys", key_id, "rotate"]:
                    new = await asyncio.to_thread(keys.rotate_key, key_id)
                    await self._changed()
                    return 200, _new_key(new)
                case "DELETE", ["keys", key_id]:
                    await asyncio.to_thread(keys.revoke_key, key_id)
                    await self._changed()
                    return 200, {"id": key_id, "revoked": True}
                case "GET", ["usage"]:
                    by = [b for b in query.get("by", "").split(",") if b]
                    since = parse_time(query["since"], "since") if "since" in query else None
                    until = parse_time(query["until"], "until") if "until" in query else None
                    usage = await asyncio.to_thread(
                        store.usage, tenant=query.get("tenant"), by=by, since_ts=since, until_ts=until
                    )
                    return 200, {"object": "list", "by": by, "data": usage_view(usage)}
        except StoreError as exc:
            raise _store_error(exc) from None
        raise APIError(404, f"Unknown admin route: {method} /admin/{'/'.join(parts)}.", code="unknown_url")


def _new_key(new: NewKey) -> dict[str, Any]:
    return {"key": new.key, **key_view(new.record)}

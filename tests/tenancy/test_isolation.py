"""Keys and usage never cross tenants, for any mix of tenants, keys and traffic (hypothesis)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldenpath.store import RequestRecord, Store
from goldenpath.tenancy import KeyRing, KeySpec, TenantSpec, create_key, create_tenant

tenant_names = st.lists(st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True), min_size=1, max_size=4, unique=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenant_names, st.data())
def test_keys_and_usage_are_isolated(tenants: list[str], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'gp.db'}")
        store.migrate()
        ring = KeyRing(store, b"secret")
        for t in tenants:
            create_tenant(store, TenantSpec(name=t))
        keys = []
        for i in range(data.draw(st.integers(1, 8))):
            tenant = data.draw(st.sampled_from(tenants))
            keys.append((tenant, create_key(ring, KeySpec(tenant=tenant, name=f"svc{i}"))))
        ring.refresh()
        for tenant, new in keys:
            principal = ring.authenticate(new.key)
            assert principal is not None and principal.tenant == tenant and principal.key_id == new.record.id
        assert ring.authenticate("gp-" + "x" * 43) is None
        # Traffic: every record belongs to the key's own tenant, whatever the mix.
        expected: dict[str, tuple[int, float]] = {t: (0, 0.0) for t in tenants}
        records = []
        for i, (cost, which) in enumerate(
            data.draw(st.lists(st.tuples(st.floats(0, 5, allow_nan=False), st.integers(0, len(keys) - 1)), max_size=30))
        ):
            tenant, new = keys[which]
            records.append(
                RequestRecord(
                    id=f"r{i}",
                    ts=time.time(),
                    day="2026-11-25",
                    endpoint="chat",
                    status=200,
                    latency_ms=1.0,
                    key_id=new.record.id,
                    tenant=tenant,
                    model="m",
                    cost_usd=cost,
                )
            )
            n, c = expected[tenant]
            expected[tenant] = (n + 1, c + cost)
        store.insert_requests(records)
        for t in tenants:
            rows = store.usage(tenant=t)
            n, c = expected[t]
            assert sum(r.requests for r in rows) == n
            assert abs(sum(r.cost_usd for r in rows) - c) < 1e-6
            listed = {k.id for k in store.list_keys(t)}
            assert listed == {new.record.id for tenant, new in keys if tenant == t}
        store.close()

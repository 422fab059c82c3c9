from pathlib import Path

import pytest
from pydantic import ValidationError

from goldenpath.store import Store
from goldenpath.tenancy import KeyRing, KeySpec, TenantSpec, create_key, create_tenant


def test_groups_reach_the_authenticated_principal_and_can_be_replaced(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gp.db'}")
    store.migrate()
    ring = KeyRing(store, b"secret")
    create_tenant(store, TenantSpec(name="acme"))
    first = create_key(ring, KeySpec(tenant="acme", name="alice", groups=["eng", "oncall", "eng"]))
    plain = create_key(ring, KeySpec(tenant="acme", name="bob"))
    ring.refresh()
    alice = ring.authenticate(first.key)
    assert alice is not None and alice.groups == frozenset({"eng", "oncall"})
    assert alice.principal_id == first.record.principal_id
    bob = ring.authenticate(plain.key)
    assert bob is not None and bob.groups == frozenset()

    # a second key for the same principal with groups replaces them for every key of that principal
    second = create_key(ring, KeySpec(tenant="acme", name="alice", groups=["sales"]))
    assert ring.refresh_if_changed()
    for key in (first.key, second.key):
        who = ring.authenticate(key)
        assert who is not None and who.groups == frozenset({"sales"})
    # a key created without groups keeps the principal's
    create_key(ring, KeySpec(tenant="acme", name="alice"))
    ring.refresh_if_changed()
    who = ring.authenticate(first.key)
    assert who is not None and who.groups == frozenset({"sales"})


@pytest.mark.parametrize("bad", ["", "has space", "x" * 101, "-lead"])
def test_bad_group_names_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="group"):
        KeySpec(tenant="acme", name="alice", groups=[bad])

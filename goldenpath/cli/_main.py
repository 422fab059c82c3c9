"""``goldenpath serve`` and ``goldenpath requests tail``."""

from __future__ import annotations

import datetime as dt
import importlib
import sys
import time
from pathlib import Path
from typing import Any

import click

from goldenpath.config import ConfigError, Settings, load_settings
from goldenpath.store import RequestRecord, Store, StoreError


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


class _LazyGroup(click.Group):
    """Subcommands named by import path and imported only when run: `serve` must not pay for the
    evaluation and guard stacks (scipy, scikit-learn, Presidio) in start time and memory."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module, _, attr = self.lazy[cmd_name].partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, lazy={"gate": "goldenpath.evals._cli:gate_command"})
@click.version_option(package_name="goldenpath")
def main() -> None:
    """goldenpath: one governed OpenAI-compatible endpoint in front of every model."""


@main.group(
    "eval",
    cls=_LazyGroup,
    lazy={name: f"goldenpath.evals._cli:{name}_command" for name in ("run", "export", "report", "compare")},
)
def eval_group() -> None:
    """Evaluate models and compare runs."""


@main.group("guard", cls=_LazyGroup, lazy={"train": "goldenpath.guard._train:train_command"})
def guard_group() -> None:
    """Guard models: train the prompt-injection classifier."""


@main.group("rag", cls=_LazyGroup, lazy={n: f"goldenpath.rag._cli:{n}_command" for n in ("ingest", "query")})
def rag_group() -> None:
    """Retrieval: ingest files into collections and search them (through GOLDENPATH_URL when set)."""


@main.command()
@click.option("--config", "config", type=click.Path(path_type=Path), help="YAML config file.")
@click.option("--host", help="Listen address (default from config, 127.0.0.1).")
@click.option("--port", type=int, help="Listen port (default from config, 8080).")
def serve(config: Path | None, host: str | None, port: int | None) -> None:
    """Run the gateway."""
    import uvicorn

    from goldenpath.gateway import Gateway

    settings = _settings(config)
    server_cfg = settings.server.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    settings = settings.model_copy(update={"server": server_cfg})
    try:
        app = Gateway(settings)
    except ValueError as exc:
        raise click.ClickException(f"{config or 'defaults'}: {exc}") from None
    original_startup = app.startup

    async def startup() -> None:
        await original_startup()
        if app.generated_admin_key:
            click.echo(
                "Generated the admin key (shown once; also saved to "
                f"{settings.data_dir / 'admin.key'}):\n{app.generated_admin_key}",
                err=True,
            )
        click.echo(
            f"goldenpath serving {len(settings.models)} models on http://{server_cfg.host}:{server_cfg.port}",
            err=True,
        )

    app.startup = startup  # type: ignore[method-assign]
    uvicorn.run(
        app,
        host=server_cfg.host,
        port=server_cfg.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=30,
    )


def _migrated_store(settings: Settings) -> Store:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.database_url)
    try:
        store.migrate()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    return store


@main.group()
def requests() -> None:
    """Inspect the request log."""


def _print_record(r: RequestRecord) -> None:
    when = dt.datetime.fromtimestamp(r.ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    ttft = f"{r.ttft_ms:.1f}" if r.ttft_ms is not None else "-"
    click.echo(
        f"{when}  {r.status:3d}  {r.endpoint:<11} {r.model or '-':<24} {r.deployment or '-':<28} "
        f"in={r.prompt_tokens:<5} out={r.completion_tokens:<5} ${r.cost_usd:<9.6f} {r.latency_ms:8.1f}ms "
        f"ttft={ttft}ms key={r.key_id or '-'}{'  cache=' + r.cache if r.cache else ''}"
        f"{'  ' + r.error_type if r.error_type else ''}"
    )
    for d in r.decisions or ():
        click.echo("    " + "  ".join(f"{k}={v}" for k, v in d.items()))


@requests.command("tail")
@click.option("--config", "config", type=click.Path(path_type=Path), help="YAML config file.")
@click.option("-n", "--lines", default=20, show_default=True, help="How many of the latest to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records.")
def requests_tail(config: Path | None, lines: int, follow: bool) -> None:
    """Show the latest request records."""

    store = _migrated_store(_settings(config))
    records = store.latest_requests(lines)
    for r in records:
        _print_record(r)
    last = records[-1].ts if records else 0.0
    while follow:
        time.sleep(0.5)
        for r in store.latest_requests(1000, after_ts=last):
            _print_record(r)
            last = r.ts
        sys.stdout.flush()


# administration: these act on the configured store directly, with or without a running gateway


def _ring(config: Path | None) -> Any:
    import os

    from goldenpath.tenancy import DEFAULT_TENANT, KeyRing, load_server_secret

    settings = _settings(config)
    store = _migrated_store(settings)
    store.ensure_tenant(DEFAULT_TENANT, time.time())
    return settings, KeyRing(store, load_server_secret(settings.data_dir, dict(os.environ)))


_config_option = click.option("--config", "config", type=click.Path(path_type=Path), help="YAML config file.")


def _fail(exc: Exception) -> click.ClickException:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "input"
        return click.ClickException(f"{option}: {first['msg'].removeprefix('Value error, ')}")
    return click.ClickException(str(exc))


@main.group()
def tenants() -> None:
    """Create and list tenants."""


@tenants.command("create")
@click.argument("name")
@click.option("--rpm", type=int, help="Requests per minute for the whole tenant.")
@click.option("--tpm", type=int, help="Tokens per minute for the whole tenant.")
@click.option("--budget-usd", type=float, help="Spend limit per period.")
@click.option("--budget-period", type=click.Choice(["day", "week", "month"]), default="month", show_default=True)
@click.option("--soft-budget", is_flag=True, help="Alert when the budget is spent instead of refusing.")
@_config_option
def tenants_create(
    name: str,
    rpm: int | None,
    tpm: int | None,
    budget_usd: float | None,
    budget_period: str,
    soft_budget: bool,
    config: Path | None,
) -> None:
    """Create a tenant."""
    from pydantic import ValidationError

    from goldenpath.tenancy import TenantSpec, create_tenant

    _, ring = _ring(config)
    try:
        spec = TenantSpec(
            name=name,
            rpm=rpm,
            tpm=tpm,
            budget_usd=budget_usd,
            budget_period=budget_period,  # type: ignore[arg-type]
            budget_hard=not soft_budget,
        )
        create_tenant(ring.store, spec)
    except (ValidationError, StoreError) as exc:
        raise _fail(exc) from None
    click.echo(f"created tenant {name}")


@tenants.command("list")
@_config_option
def tenants_list(config: Path | None) -> None:
    """List tenants."""
    _, ring = _ring(config)
    click.echo(f"{'TENANT':<24} {'RPM':>7} {'TPM':>9} {'BUDGET':>12}")
    for t in ring.store.list_tenants():
        budget = f"${t.budget_usd:g}/{t.budget_period}{'' if t.budget_hard else ' soft'}" if t.budget_usd else "-"
        click.echo(f"{t.name:<24} {t.rpm or '-':>7} {t.tpm or '-':>9} {budget:>12}")


@main.group()
def keys() -> None:
    """Create, list, rotate and revoke API keys."""


@keys.command("create")
@click.option("--tenant", required=True)
@click.option("--name", required=True, help="The service account or user the key is for.")
@click.option("--models", help="Comma-separated aliases the key may call (default: all).")
@click.option("--rpm", type=int)
@click.option("--tpm", type=int)
@click.option("--budget-usd", type=float)
@click.option("--budget-period", type=click.Choice(["day", "week", "month"]), default="month", show_default=True)
@click.option("--soft-budget", is_flag=True, help="Alert when the budget is spent instead of refusing.")
@click.option("--expires-in", help="e.g. 90d, 12h (default: never).")
@click.option("--admin", is_flag=True, help="May call the /admin API.")
@click.option("--group", "groups", multiple=True, help="A group of the key's principal (repeat); replaces its groups.")
@_config_option
def keys_create(
    tenant: str,
    name: str,
    models: str | None,
    rpm: int | None,
    tpm: int | None,
    budget_usd: float | None,
    budget_period: str,
    soft_budget: bool,
    expires_in: str | None,
    admin: bool,
    groups: tuple[str, ...],
    config: Path | None,
) -> None:
    """Create a key; the key itself is printed once, alone on the last line."""
    from pydantic import ValidationError

    from goldenpath.tenancy import KeySpec, create_key

    settings, ring = _ring(config)
    try:
        spec = KeySpec(
            tenant=tenant,
            name=name,
            models=[m.strip() for m in models.split(",") if m.strip()] if models else None,
            rpm=rpm,
            tpm=tpm,
            budget_usd=budget_usd,
            budget_period=budget_period,  # type: ignore[arg-type]
            budget_hard=not soft_budget,
            expires_in=expires_in,
            admin=admin,
            groups=list(groups) or None,
        )
        new = create_key(ring, spec, {m.name for m in settings.models})
    except (ValidationError, StoreError, ValueError) as exc:
        raise _fail(exc) from None
    click.echo(
        f"created key {new.record.id} ({new.record.prefix}…) for {name} in tenant {tenant}; "
        "store it now, it is not shown again:",
        err=True,
    )
    click.echo(new.key)


@keys.command("list")
@click.option("--tenant")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@_config_option
def keys_list(tenant: str | None, include_revoked: bool, config: Path | None) -> None:
    """List keys (by prefix; keys themselves are never stored)."""

    _, ring = _ring(config)
    click.echo(
        f"{'ID':<21} {'PREFIX':<9} {'TENANT':<14} {'NAME':<16} {'MODELS':<28} {'RPM':>6} {'TPM':>8} "
        f"{'BUDGET':>14} {'EXPIRES':<10} STATE"
    )
    for k in ring.store.list_keys(tenant, include_revoked=include_revoked):
        budget = f"${k.budget_usd:g}/{k.budget_period}" if k.budget_usd else "-"
        expires = dt.datetime.fromtimestamp(k.expires_at, dt.UTC).date().isoformat() if k.expires_at else "never"
        state = "revoked" if k.revoked_at else ("admin" if k.is_admin else "active")
        click.echo(
            f"{k.id:<21} {k.prefix:<9} {k.tenant:<14} {k.name:<16} {','.join(k.models or ['*']):<28} "
            f"{k.rpm or '-':>6} {k.tpm or '-':>8} {budget:>14} {expires:<10} {state}"
        )


@keys.command("rotate")
@click.argument("key_id")
@_config_option
def keys_rotate(key_id: str, config: Path | None) -> None:
    """Give a key a new secret; the old one stops working at once. Prints the new key on the last line."""

    _, ring = _ring(config)
    try:
        new = ring.rotate_key(key_id)
    except StoreError as exc:
        raise _fail(exc) from None
    click.echo(f"rotated {key_id}; the new key is shown once:", err=True)
    click.echo(new.key)


@keys.command("revoke")
@click.argument("key_id")
@_config_option
def keys_revoke(key_id: str, config: Path | None) -> None:
    """Revoke a key; every gateway replica refuses it within a second."""

    _, ring = _ring(config)
    try:
        ring.revoke_key(key_id)
    except StoreError as exc:
        raise _fail(exc) from None
    click.echo(f"revoked {key_id}")


@main.command()
@click.option("--tenant")
@click.option("--by", default="model,day", show_default=True, help="Group by: model, day, key, tenant, deployment.")
@click.option("--since", help="ISO date or Unix time.")
@click.option("--until", help="ISO date or Unix time.")
@click.option("--json", "as_json", is_flag=True)
@_config_option
def usage(
    tenant: str | None, by: str, since: str | None, until: str | None, as_json: bool, config: Path | None
) -> None:
    """Requests, tokens, cost and cost per successful request."""
    import json

    from goldenpath.gateway._admin import parse_time
    from goldenpath.gateway._errors import APIError
    from goldenpath.tenancy import usage_view

    _, ring = _ring(config)
    groups = [b.strip() for b in by.split(",") if b.strip()]
    try:
        rows = ring.store.usage(
            tenant=tenant,
            by=groups,
            since_ts=parse_time(since, "since") if since else None,
            until_ts=parse_time(until, "until") if until else None,
        )
    except (StoreError, APIError) as exc:
        raise _fail(exc) from None
    data = usage_view(rows)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    head = "".join(f"{g.upper():<26}" for g in groups)
    click.echo(f"{head}{'REQUESTS':>9} {'OK':>8} {'IN TOKENS':>11} {'OUT TOKENS':>11} {'COST USD':>12} {'USD/OK':>12}")
    for row in data:
        cells = "".join(f"{row[g]:<26}" for g in groups)
        per = "-" if row["cost_per_success_usd"] is None else f"{row['cost_per_success_usd']:.6f}"
        click.echo(
            f"{cells}{row['requests']:>9} {row['succeeded']:>8} {row['prompt_tokens']:>11} "
            f"{row['completion_tokens']:>11} {row['cost_usd']:>12.6f} {per:>12}"
        )

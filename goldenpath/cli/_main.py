"""``goldenpath serve`` and ``goldenpath requests tail``."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import click

from goldenpath.config import ConfigError, Settings, load_settings


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="goldenpath")
def main() -> None:
    """goldenpath: one governed OpenAI-compatible endpoint in front of every model."""


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


@main.group()
def requests() -> None:
    """Inspect the request log."""


def _print_record(r: object) -> None:
    from goldenpath.store import RequestRecord

    assert isinstance(r, RequestRecord)
    when = dt.datetime.fromtimestamp(r.ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    ttft = f"{r.ttft_ms:.1f}" if r.ttft_ms is not None else "-"
    click.echo(
        f"{when}  {r.status:3d}  {r.endpoint:<11} {r.model or '-':<24} {r.deployment or '-':<28} "
        f"in={r.prompt_tokens:<5} out={r.completion_tokens:<5} {r.latency_ms:8.1f}ms ttft={ttft}ms "
        f"key={r.key_id or '-'}{'  ' + r.error_type if r.error_type else ''}"
    )


@requests.command("tail")
@click.option("--config", "config", type=click.Path(path_type=Path), help="YAML config file.")
@click.option("-n", "--lines", default=20, show_default=True, help="How many of the latest to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records.")
def requests_tail(config: Path | None, lines: int, follow: bool) -> None:
    """Show the latest request records."""
    from goldenpath.store import Store

    store = Store(_settings(config).database_url)
    store.migrate()
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

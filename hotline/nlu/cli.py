"""`hotline nlu ...`: train, parse and evaluate the Rasa NLU model.

`parse` works with or without `hotline serve`: it first asks the server at settings.nlu_url;
if nothing answers there, it starts a temporary Rasa server of its own on a free loopback port
(about 20 s to load the model), parses, and stops it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from hotline.config import ConfigError, Settings, load_settings
from hotline.nlu.client import NLUUnavailable, SyncNLUClient
from hotline.nlu.train import NLUSetupError, evaluate, train


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("nlu")
def nlu() -> None:
    """Vietnamese NLU (Rasa): train, parse, evaluate."""


@nlu.command("train")
@click.option("--force", is_flag=True, help="Train even if the newest model is up to date.")
def train_cmd(force: bool) -> None:
    """Train the model from nlu_models/ (skipped when the newest model is newer than the data)."""
    settings = _settings()
    try:
        result = train(settings, force=force, echo=lambda m: click.echo(m, err=True))
    except NLUSetupError as exc:
        raise click.ClickException(str(exc)) from None
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    if result.trained:
        click.echo(f"trained in {result.seconds:.0f} s: {result.model}")
    else:
        click.echo(f"up to date: {result.model}")


def _lines(text: str | None) -> list[str]:
    if text is not None:
        return [text]
    return [ln for ln in (raw.strip() for raw in sys.stdin) if ln]


def _print_results(client: SyncNLUClient, lines: list[str]) -> None:
    for line in lines:
        result = client.parse(line)
        click.echo(json.dumps(result.to_parse_json(), ensure_ascii=False))


@nlu.command("parse")
@click.argument("text", required=False)
@click.option("--timeout", type=float, default=None, help="Per-request timeout in seconds.")
def parse_cmd(text: str | None, timeout: float | None) -> None:
    """Parse TEXT (or one utterance per line on stdin); print one JSON object per line."""
    settings = _settings()
    lines = _lines(text)
    if not lines:
        return
    timeout_s = timeout or max(settings.nlu_timeout_s, 5.0)  # a person waits; a call does not
    client = SyncNLUClient(settings.nlu_url, settings.nlu_auth_token, timeout_s)
    try:
        client.status()
    except NLUUnavailable:
        client.close()
        _parse_with_temporary_server(settings, lines, timeout_s)
        return
    with client:
        try:
            _print_results(client, lines)
        except NLUUnavailable as exc:
            raise click.ClickException(str(exc)) from None


def _parse_with_temporary_server(settings: Settings, lines: list[str], timeout_s: float) -> None:
    from hotline.nlu.server import RasaServer, free_port

    click.echo(
        f"no NLU server at {settings.nlu_url}; starting a temporary one (about 20 s)...",
        err=True,
    )
    server = RasaServer.from_settings(
        settings,
        port=free_port(),
        log_path=settings.data_dir / "logs" / "rasa-parse.log",
    )

    async def run() -> None:
        try:
            await server.start()
        except NLUSetupError as exc:
            raise click.ClickException(str(exc)) from None
        try:
            # The blocking client runs in a thread so the supervisor task keeps running.
            def work() -> None:
                with SyncNLUClient(server.url, server.token, timeout_s) as c:
                    _print_results(c, lines)

            await asyncio.to_thread(work)
        finally:
            await server.stop()

    try:
        asyncio.run(run())
    except (NLUUnavailable, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from None


@nlu.command("eval")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Report directory (default: DATA_DIR/nlu-eval).",
)
def eval_cmd(out: Path | None) -> None:
    """Run `rasa test nlu` on the held-out set nlu_models/test/; print accuracy and macro-F1."""
    settings = _settings()
    try:
        result = evaluate(settings, out_dir=out, echo=lambda m: click.echo(m, err=True), quiet=True)
    except (NLUSetupError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.summary())


# `hotline nlu export-corrections`: operators' intent corrections from the console, as Rasa YAML.
from hotline.console.cli import export_corrections_cmd  # noqa: E402

nlu.add_command(export_corrections_cmd)

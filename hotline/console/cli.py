"""`hotline operators ...`: console accounts; and `export-corrections` for the `nlu` group.

Passwords are prompted for (hidden, typed twice) or, for scripts, read from one line of stdin
with --password-stdin; never taken as an argument (it would sit in the shell history and in
`ps`). Every change is written to the audit log as `cli:<system user>`.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

import click

from hotline.config import ConfigError, Settings, load_settings
from hotline.console import accounts
from hotline.console.store import ROLE_LABELS, ROLES


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _db() -> Any:
    import hotline.schema  # noqa: F401  (registers every table)
    from hotline.store import open_db

    return open_db(_settings().db_path)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return click.prompt(
        "Mật khẩu (password)",
        hide_input=True,
        confirmation_prompt="Nhập lại mật khẩu (repeat)",
    )


def _run(fn: Any) -> Any:
    db = _db()
    try:
        with db.atomic():
            return fn(db)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.conn.close()


@click.group("operators")
def operators() -> None:
    """Tài khoản bảng điều khiển: add, list, set-password, set-role, disable, enable."""


@operators.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice((*ROLES, "agency")),
    default="operator",
    show_default=True,
    help="operator: works tickets; supervisor: + full numbers, dashboard; admin: + accounts; "
    "agency: an agency's staff, who see only their agency's tickets (needs --agency).",
)
@click.option("--name", "display_name", default="", help="Tên hiển thị (display name).")
@click.option(
    "--agency",
    "agency_code",
    default="",
    help="For --role agency: the agency's code in call_flows/routing.yml (ubnd_xa:19333 for "
    "one commune).",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (one line).")
def add_cmd(
    username: str, role: str, display_name: str, agency_code: str, password_stdin: bool
) -> None:
    """Create an account; the password is prompted for."""
    try:
        name = accounts.check_username(username)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    password = _password(password_stdin)
    _run(
        lambda db: accounts.add_operator(
            db,
            name,
            role,
            password,
            actor=_actor(),
            display_name=display_name,
            agency_code=agency_code,
        )
    )
    click.echo(f"Đã tạo tài khoản {name} ({ROLE_LABELS[role]}).")


@operators.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_cmd(as_json: bool) -> None:
    """All accounts, with role and state (never password hashes)."""
    rows = _run(accounts.list_operators)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    if not rows:
        click.echo("Chưa có tài khoản nào. Tạo bằng: hotline operators add TÊN --role admin")
        return
    click.echo(f"{'TÊN ĐĂNG NHẬP':20} {'VAI TRÒ':20} {'TRẠNG THÁI':11} ĐĂNG NHẬP GẦN NHẤT")
    for r in rows:
        state = "đã khóa" if r["disabled"] else "hoạt động"
        role = f"{ROLE_LABELS.get(r['role'], r['role'])} ({r['role']})"
        click.echo(f"{r['username']:20} {role:20} {state:11} {r.get('last_login_at') or '-'}")


@operators.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (one line).")
def set_password_cmd(username: str, password_stdin: bool) -> None:
    """Change a password (signs that account out everywhere, clears its lockout)."""
    _run(lambda db: accounts._require(db, username))
    password = _password(password_stdin)
    _run(lambda db: accounts.set_password(db, username, password, actor=_actor()))
    click.echo(f"Đã đổi mật khẩu cho {accounts.clean_username(username)}.")


@operators.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
def set_role_cmd(username: str, role: str) -> None:
    """Change an account's role."""
    _run(lambda db: accounts.set_role(db, username, role, actor=_actor()))
    click.echo(f"{accounts.clean_username(username)}: {ROLE_LABELS[role]}.")


@operators.command("disable")
@click.argument("username")
def disable_cmd(username: str) -> None:
    """Lock an account (signs it out at once); its history stays."""
    _run(lambda db: accounts.set_disabled(db, username, True, actor=_actor()))
    click.echo(f"Đã khóa {accounts.clean_username(username)}.")


@operators.command("enable")
@click.argument("username")
def enable_cmd(username: str) -> None:
    """Unlock a disabled account."""
    _run(lambda db: accounts.set_disabled(db, username, False, actor=_actor()))
    click.echo(f"Đã mở khóa {accounts.clean_username(username)}.")


# --- for the `nlu` group ----------------------------------------------------------------------


def _default_corrections_path() -> Path:
    from hotline.nlu.train import DATA_DIR

    return DATA_DIR / "corrections.yml"


@click.command("export-corrections")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write (default: nlu_models/data/corrections.yml, picked up by `hotline nlu train`).",
)
def export_corrections_cmd(output: Path | None) -> None:
    """Write the operators' intent corrections as Rasa 3.x NLU training data (YAML)."""
    from hotline.console.corrections import render_corrections, write_export

    out = output or _default_corrections_path()
    db = _db()
    try:
        result = render_corrections(db, exclude=out)
    finally:
        db.conn.close()
    write_export(result, out)
    if not result.examples:
        click.echo("Chưa có sửa nhãn nào để xuất (no corrections to export); nothing written.")
    else:
        per = ", ".join(f"{k} {v}" for k, v in result.by_intent.items())
        click.echo(f"wrote {result.examples} examples to {out} ({per})")
    if result.skipped_known:
        click.echo(f"skipped {result.skipped_known} already in the training data", err=True)
    if result.skipped_test:
        click.echo(
            f"skipped {result.skipped_test} that are in the held-out test set (nlu_models/test)",
            err=True,
        )

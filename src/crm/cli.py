"""`crm` command line: serve, worker, beat, migrate, create-admin, i18n-check."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from crm.config import get_settings

app = typer.Typer(help="CRM platform command line.", no_args_is_help=True, add_completion=False)
console = Console()
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _alembic_config() -> object:
    from alembic.config import Config

    ini = PROJECT_ROOT / "alembic.ini"
    if not ini.exists():
        ini = Path.cwd() / "alembic.ini"
    config = Config(str(ini))
    config.attributes["configure_logger"] = False
    return config


async def _ensure_database(url: str) -> bool:
    """Create the database named in `url` when missing; True when it was created."""
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = parsed.database
    admin_dsn = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
            return True
        return False
    finally:
        await conn.close()


@app.command()
def migrate(revision: str = "head") -> None:
    """Create the database when missing and apply migrations up to REVISION."""
    from alembic import command

    settings = get_settings()
    if asyncio.run(_ensure_database(settings.database_url)):
        console.print("[green]created database[/green]")
    command.upgrade(_alembic_config(), revision)  # type: ignore[arg-type]
    console.print(f"[green]database at {revision}[/green]")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    reload: Annotated[bool, typer.Option(help="Reload on code changes")] = False,
) -> None:
    """Run the API with uvicorn."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "crm.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        reload=reload,
        access_log=False,
        proxy_headers=False,  # client IPs are taken from X-Forwarded-For only via TRUSTED_PROXIES
        timeout_graceful_shutdown=20,
        log_config=None,
    )


def _celery(*args: str) -> None:
    # Replace this process so that signals (Ctrl-C, SIGTERM from a supervisor or `docker stop`)
    # reach Celery itself and it shuts down warmly.
    cmd = [sys.executable, "-m", "celery", "-A", "crm.worker.app:celery_app", *args]
    sys.stdout.flush()
    os.execv(sys.executable, cmd)  # noqa: S606


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(help="Pool processes [default: 2, or WEBHOOK_SENDER_PROCESSES + 1 when more]"),
    ] = None,
    loglevel: Annotated[str, typer.Option()] = "INFO",
) -> None:
    """Run a Celery worker."""
    if concurrency is None:
        # Each webhook sender process is busy while deliveries flow: one more is left for the other jobs.
        concurrency = max(2, get_settings().webhook_sender_processes + 1)
    if get_settings().worker_metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # The pool processes' samples meet in a directory of this worker's own.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="crm-worker-metrics-")
    _celery("worker", "-Q", "crm", "--concurrency", str(concurrency), "--loglevel", loglevel)


@app.command()
def beat(loglevel: Annotated[str, typer.Option()] = "INFO") -> None:
    """Run Celery beat (periodic jobs)."""
    # Beside the checkout by default (CRM_RUN_DIR, else .run/): two checkouts never share a schedule.
    default = Path(os.environ.get("CRM_RUN_DIR", ".run")) / "celerybeat-schedule"
    schedule = Path(os.environ.get("CELERY_BEAT_SCHEDULE", str(default)))
    schedule.parent.mkdir(parents=True, exist_ok=True)
    _celery("beat", "--loglevel", loglevel, "--schedule", str(schedule))


@app.command("create-admin")
def create_admin(
    email: Annotated[str | None, typer.Option("--email", "-e", help="Admin email [ADMIN_EMAIL]")] = None,
    password: Annotated[
        str | None, typer.Option("--password", "-p", help="Admin password [ADMIN_PASSWORD]")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Full name [ADMIN_NAME]")] = None,
    organization: Annotated[
        str | None,
        typer.Option("--organization", "-o", help="Organization to own, name or slug [ADMIN_ORGANIZATION]"),
    ] = None,
) -> None:
    """Create (or update) a superuser; idempotent. Options left out come from the settings (.env)."""
    from pydantic import TypeAdapter, ValidationError

    from crm.auth.passwords import NewPassword
    from crm.bootstrap import create_admin as do_create
    from crm.core.db import create_engine, create_sessionmaker
    from crm.core.schemas import Email

    settings = get_settings()
    email = email or settings.admin_email
    password = password or settings.admin_password
    name = name or settings.admin_name
    organization = organization or settings.admin_organization
    if not email or not password:
        console.print("[red]give --email and --password, or set ADMIN_EMAIL and ADMIN_PASSWORD[/red]")
        raise typer.Exit(2)

    try:
        email = TypeAdapter(Email).validate_python(email)
        TypeAdapter(NewPassword).validate_python(password)
    except ValidationError as exc:
        console.print(f"[red]{exc.errors()[0]['msg']}[/red]")
        raise typer.Exit(2) from None

    async def run() -> None:
        engine = create_engine(settings)
        try:
            user, org_id = await do_create(
                create_sessionmaker(engine),
                settings,
                email=email,
                password=password,
                name=name,
                organization=organization,
            )
            console.print(
                f"[green]superuser {user.email} (id {user.id})"
                + (f", owner of organization {org_id}" if org_id else "")
                + "[/green]"
            )
        finally:
            await engine.dispose()

    asyncio.run(run())


@app.command("demo-data")
def demo_data(
    org: Annotated[int, typer.Option("--org", help="Organization id to fill")],
    contacts: Annotated[int, typer.Option(help="Contacts to add")] = 1000,
    deals: Annotated[int, typer.Option(help="Deals to add (with stage history)")] = 500,
    companies: Annotated[int | None, typer.Option(help="Companies (default contacts/20)")] = None,
    seed: Annotated[int, typer.Option(help="Random seed")] = 1,
) -> None:
    """Fill an organization with realistic demo data in bulk (binary COPY)."""
    from rich.progress import Progress

    from crm.demo.data import generate

    dsn = get_settings().sync_database_url
    with Progress(console=console) as bar:
        tasks: dict[str, object] = {}
        totals = {
            "companies": companies or max(1, contacts // 20),
            "contacts": contacts,
            "deals": deals,
            "tasks": max(1, deals // 2),
        }

        def report(what: str, n: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=totals.get(what))
            bar.advance(tasks[what], n)  # type: ignore[arg-type]

        try:
            done = asyncio.run(
                generate(
                    dsn, org, contacts=contacts, deals=deals, companies=companies, seed=seed, progress=report
                )
            )
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    console.print(f"[green]added {done}[/green]")


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV or XLSX file")],
    entity: Annotated[str, typer.Option(help="contacts, companies, deals or projects")],
    org: Annotated[int, typer.Option("--org", help="Organization id")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would happen; write nothing")] = (
        False
    ),
    on_conflict: Annotated[str, typer.Option(help="update or skip existing rows")] = "update",
    atomic: Annotated[bool, typer.Option("--atomic", help="All or nothing")] = False,
    mapping: Annotated[str | None, typer.Option(help='JSON {"<column header>": "<field>"}')] = None,
) -> None:
    """Import a spreadsheet into an organization (the same job as `POST /imports`), with a progress bar."""
    from crm.imports.cli import CliError, import_file

    if entity not in ("contacts", "companies", "deals", "projects") or on_conflict not in ("update", "skip"):
        console.print("[red]--entity: contacts|companies|deals|projects; --on-conflict: update|skip[/red]")
        raise typer.Exit(2)
    try:
        job = asyncio.run(
            import_file(
                console,
                file,
                entity=entity,
                organization_id=org,
                dry_run=dry_run,
                on_conflict=on_conflict,
                atomic=atomic,
                mapping=mapping,
            )
        )
    except CliError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    for error in job.errors[:20]:
        console.print(f"row {error.get('row')}, {error.get('column') or '-'}: {error['message']}")
    colour = "green" if job.status == "succeeded" else "red"
    console.print(
        f"[{colour}]import {job.id} {job.status}{' (dry run)' if job.dry_run else ''}: "
        f"{job.processed_rows} rows, "
        f"created {job.created}, updated {job.updated}, skipped {job.skipped}, failed {job.failed}[/{colour}]"
        + (f"\n{job.error}" if job.error else "")
    )
    if job.status != "succeeded":
        raise typer.Exit(1)


@app.command("i18n-check")
def i18n_check(
    language: Annotated[str, typer.Option(help="Catalog to check")] = "ru",
    write: Annotated[
        bool, typer.Option("--write", help="Append the missing entries, untranslated, to the catalog")
    ] = False,
) -> None:
    """Print every message the API can answer with that LANGUAGE's catalog cannot translate, as
    catalog entries to fill in (exit 1 when there is any)."""
    from crm.core import i18n
    from crm.locale import check

    missing = check.missing(language)
    if not missing:
        console.print(f"[green]every message has a translation ({language})[/green]")
        return
    entries = check.as_po(missing)
    if write:
        path = i18n.LOCALE_DIR / language / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"
        with path.open("a", encoding="utf-8") as fp:
            fp.write("\n" + entries)
        console.print(f"[yellow]{len(missing)} entries appended to {path}: fill in their msgstr[/yellow]")
    else:
        print(entries)
        console.print(f"[red]{len(missing)} messages without a translation ({language})[/red]")
    raise typer.Exit(1)


if __name__ == "__main__":
    app()

"""The import job run by the worker."""

from __future__ import annotations

from crm.imports.engine import run_import
from crm.worker.app import celery_app
from crm.worker.runtime import run_async, sessionmaker


async def run_import_body(job_id: int) -> str | None:
    job = await run_import(job_id, maker=sessionmaker())
    return job.status if job is not None else None


@celery_app.task(name="imports.run", acks_late=True)
def run_import_job(job_id: int) -> str | None:
    return run_async(run_import_body(job_id))

"""Bulk import as a job: a CSV manifest and the images it names in one request, answered at once
with the job; ``GET /v1/jobs/{id}`` follows it."""

from __future__ import annotations

import pathlib
from typing import Annotated

import anyio
from fastapi import APIRouter, File, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from core.errors import ImageTooLargeError, InvalidInputError
from pipeline.imports import KIND, prepare_import
from pipeline.job_queue import QueuedJobs
from pipeline.jobs import Job, JobRunner
from service import schemas as s
from service.deps import ERROR_RESPONSES, read_upload, settings_of

write = APIRouter(tags=["catalogue"], responses=ERROR_RESPONSES)

JobId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{16}$", description="the id the import answered with")]


def jobs_of(request: Request) -> JobRunner | QueuedJobs:
    return request.app.state.jobs


def job_json(job: Job) -> dict:
    return {"id": job.id, "kind": job.kind, "state": job.state, "total": job.total, "done": job.done,
            "counts": job.counts, "errors": [{"item": e.item, "reason": e.reason} for e in job.errors],
            "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
            "rate": None if job.rate is None else round(job.rate, 3),
            "eta_s": None if job.eta_s is None else round(job.eta_s, 1),
            "error": job.error, "note": job.note, "url": f"/v1/jobs/{job.id}"}


@write.post("/v1/import", status_code=202, response_model=s.JobOut,
            responses={202: {"description": "the import is queued; poll its url"}})
async def bulk_import(
    request: Request,
    manifest: Annotated[UploadFile, File(description="a CSV manifest: sku,image,title,brand,category,tags,"
                                                     "price,description (as for `skulens index`)")],
    file: Annotated[list[UploadFile] | None, File(description="the images the manifest names, by file name")]
    = None,
):
    """Queue an import: the manifest and images are on disk when this answers, and the job runs in
    the background (one at a time; on a PostgreSQL catalogue, in `skulens worker` processes, part by
    part); a row naming an image that was not uploaded is skipped."""
    service = settings_of(request).service
    files = file or []
    raw = await manifest.read(service.max_manifest_bytes + 1)
    if len(raw) > service.max_manifest_bytes:
        raise ImageTooLargeError(f"manifest over the limit of {service.max_manifest_bytes} bytes")
    if len(files) > service.max_files * 50:
        raise InvalidInputError(f"at most {service.max_files * 50} images per import")
    uploads = {}
    for f in files:
        name = pathlib.PurePath(f.filename or "").name
        if not name:
            raise InvalidInputError("every uploaded image needs a file name (the manifest names it)")
        uploads[name] = await read_upload(request, f)
    runner = jobs_of(request)
    job = await anyio.to_thread.run_sync(lambda: runner.submit(KIND, lambda folder: prepare_import(folder, raw, uploads)))
    return JSONResponse(job_json(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@write.get("/v1/jobs/{job_id}", response_model=s.JobOut)
def get_job(request: Request, job_id: JobId):
    """A job's state, progress (rows done, rate, time left) and the rows it skipped."""
    return job_json(jobs_of(request).store.get(job_id))


@write.get("/v1/jobs", response_model=s.JobList)
def list_jobs(request: Request):
    """The 20 most recent jobs, newest first."""
    return {"items": [job_json(j) for j in jobs_of(request).store.recent(20)]}

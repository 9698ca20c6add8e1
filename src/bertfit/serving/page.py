"""The web page at `/` (templates/serve.html) and the routes of its file uploads: POST /files (the raw file as the
body, its name in `?name=`), GET /files/{id} (status and rows done), GET /files/{id}/download (the labelled file).

The download is found by the job's random id alone (128 bits, known only to whoever uploaded), so that a plain link
can fetch it; uploading and polling need the API key when one is set.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from bertfit.serving.app import RETRY_AFTER, api_key_checker
from bertfit.serving.files import MEDIA_TYPES, SUFFIXES, Busy, FileJobs
from bertfit.serving.schemas import FileJob
from bertfit.serving.service import Service
from bertfit.templates import render_html


def add_page(app: FastAPI, service: Service) -> None:
    files = FileJobs(service.clf, int(service.config.max_upload_mb * 1e6))
    app.state.files = files
    keyed = [Depends(api_key_checker(service))]
    page = render_html("serve.html", model=_page_data(service))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.post("/files", response_model=FileJob, status_code=202, dependencies=keyed)
    async def upload(
        request: Request,
        name: str = Query(description=f"The file's name; its extension says the format ({', '.join(SUFFIXES)})."),
        text_col: str | None = Query(None, description="The text column [the model's]."),
    ) -> Any:
        """Label a CSV/TSV/JSON Lines/Parquet file sent as the request body; poll GET /files/{id}, then download."""
        try:
            job = files.new(name, text_col)
        except Busy as error:
            return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": RETRY_AFTER})
        await files.receive(job, request.stream())
        return job.to_dict()

    @app.get("/files/{job_id}", response_model=FileJob, dependencies=keyed)
    async def status(job_id: str) -> Any:
        """A file's status: queued, running (with the rows labelled so far), done (with its download), failed."""
        return _job(files, job_id).to_dict()

    @app.get("/files/{job_id}/download", include_in_schema=True)
    async def download(job_id: str) -> FileResponse:
        """The labelled file: every input column and row, plus pred_label and pred_score (or pred_labels)."""
        job = _job(files, job_id)
        if job.status != "done":
            raise HTTPException(409, f"the file is {job.status}, not done")
        return FileResponse(job.output, media_type=MEDIA_TYPES[job.output.suffix], filename=job.name)


def _job(files: FileJobs, job_id: str) -> Any:
    job = files.get(job_id)
    if job is None:
        raise HTTPException(404, "no such file job (finished jobs are kept for a while, then removed)")
    return job


def _page_data(service: Service) -> dict[str, Any]:
    clf = service.clf
    explains = not (clf.schema.multi_label or clf.pair_col or clf.long == "sliding")
    return {"id": service.model_id["id"], "version": service.model_id["version"], "labels": clf.labels,
            "multi_label": clf.schema.multi_label, "pairs": clf.pair_col is not None, "explains": explains,
            "needs_key": bool(service.config.api_key), "max_texts": service.config.max_texts_per_request,
            "text_cols": clf.text_cols, "suffixes": list(SUFFIXES)}  # fmt: skip

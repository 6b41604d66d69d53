"""The HTTP side of `sumctl serve`: a FastAPI app over the runtime's job store, runner and webhook
outbox (runtime/serve/, runtime/webhooks.py), and the uvicorn server that runs it.

This is the only module that imports FastAPI, uvicorn, prometheus-client and Jinja2 (the `serve`
extra); cli/serve.py imports it when the command runs, so `sumctl --help` does not.

The app never hands the client a path, nor takes one: jobs are named by the ids the store
makes, and the page's two static files are served by fixed routes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import anyio
import jinja2
import uvicorn
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from sumctl.runtime.errors import InputError, StateError, SumctlError, first_line
from sumctl.runtime.options import FIELDS as OPTION_FIELDS, SummaryOptions
from sumctl.runtime.serve.runner import JobRunner
from sumctl.runtime.serve.store import JobStore, QueueFullError, client_filename
from sumctl.runtime.transcript import FORMATS as INPUT_FORMATS, parse_bytes
from sumctl.runtime.webhooks import WebhookOutbox, check_webhook_url, load_or_create_secret

from sumctl.cli.watch import configure_logging

log = logging.getLogger("sumctl.serve")

PAGE_DIR = Path(__file__).with_name("serve_page")
# The page's files, by the only names the app serves them under.
PAGE_FILES = {"serve.js": "text/javascript; charset=utf-8", "serve.css": "text/css; charset=utf-8"}
PROTECTED_PREFIXES = ("/v1/", "/metrics")
MAX_LIST_LIMIT = 200
# A form field is text; these SummaryOptions fields are not.
BOOL_FIELDS = {"clean", "minutes"}
INT_FIELDS = {"num_beams", "max_summary_tokens", "chapter_tokens", "max_bytes"}


@dataclass(frozen=True)
class ServeSettings:
    """What `sumctl serve` was asked for (cli/serve.py checks each flag)."""

    model: str | None
    state_dir: Path
    workers: int = 1
    threads: int | None = None
    token: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    retention_seconds: float | None = None
    max_upload_bytes: int = 50 * 1024 * 1024
    max_queue: int = 1000
    verbose: bool = False


class ApiError(Exception):
    """An answer other than success: its status and the one line that names the problem and
    the fix."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


class BodyTooLarge(Exception):
    pass


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Service:
    """The store, the runner, the webhook outbox and the purge, started and stopped together,
    and what /metrics reads."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        if settings.webhook_url:
            check_webhook_url(settings.webhook_url)
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = JobStore(settings.state_dir, max_queue=settings.max_queue)
        self.outbox = None
        self.runner = None
        try:
            self.secret_path = settings.state_dir / "webhook-secret"
            self.outbox = WebhookOutbox(settings.state_dir / "webhooks.db", load_or_create_secret(
                self.secret_path, settings.webhook_secret))
            self.registry = CollectorRegistry()
            self.finished = Counter("sumctl_serve_jobs_finished", "Jobs that ended since the "
                                    "server started, by how.", ["status"], registry=self.registry)
            for status in ("done", "failed"):  # shown at 0, so that a rate() has a start
                self.finished.labels(status)
            self.seconds = Histogram(
                "sumctl_serve_job_seconds", "Seconds from a job's start to its end.",
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, float("inf")),
                registry=self.registry)
            self.registry.register(_LiveMetrics(self))
            self.runner = JobRunner(self.store, settings.model, workers=settings.workers,
                                    threads=settings.threads, on_finish=self.job_finished)
        except BaseException:
            self.close()
            raise
        self._stop = threading.Event()
        self._purger: threading.Thread | None = None

    def start(self) -> None:
        again = self.store.requeue_interrupted()
        if again:
            log.info("%d job(s) interrupted by the last stop will run again", again)
        for job in self.store.unannounced():
            self.announce(job)
        self.outbox.start()
        self.runner.start()
        if self.settings.retention_seconds:
            self._purger = threading.Thread(target=self._purge_loop, name="sumctl-serve-purge",
                                            daemon=True)
            self._purger.start()

    def _purge_loop(self) -> None:
        retention = self.settings.retention_seconds
        # Often enough that nothing outlives its retention by more than a tenth of it.
        interval = min(max(retention / 10, 1.0), 3600.0)
        while not self._stop.is_set():
            try:
                purged = self.store.purge(retention)
                if purged:
                    log.info("purged %d finished job(s) older than %g s", purged, retention)
            except SumctlError as e:
                log.error("retention: %s", e)
            self._stop.wait(interval)

    def job_finished(self, job) -> None:
        """Counted, and announced to the server's webhook and the job's own (a job that ends is
        "done" or "failed")."""
        self.finished.labels(job.status).inc()
        if job.seconds is not None:
            self.seconds.observe(job.seconds)
        self.announce(job)

    def announce(self, job) -> None:
        """Put the job's end in the outbox for each receiver, then mark it announced. A kill
        between the job's commit and this leaves it unannounced, and start() announces it
        again: an event's id is made of the job, its end and the receiver's URL, so the
        outbox stores it once and a receiver that has it drops the repeat."""
        status = job.status
        payload = {"job": job.to_dict(), "links": job_links(job.id)}
        try:
            for url in dict.fromkeys(u for u in (self.settings.webhook_url, job.webhook) if u):
                receiver = hashlib.sha256(url.encode()).hexdigest()[:8]
                self.outbox.enqueue(url, f"job.{status}", payload,
                                    event_id=f"evt_{job.id}_{status}_{receiver}")
            self.store.mark_announced(job.id)
        except SumctlError as e:
            log.error("webhook for job %s: %s", job.id, e)

    def stop(self, grace: float = 30) -> None:
        self._stop.set()
        if self.runner is not None:
            self.runner.stop(timeout=grace)
        if self._purger is not None:
            self._purger.join(timeout=5)
        self.close()

    def close(self) -> None:
        if self.outbox is not None:
            self.outbox.stop()
            self.outbox = None
        self.store.close()

    # --- requests ---------------------------------------------------------------------------

    def accept(self, data: bytes, *, filename: str, input_format: str | None, options: dict,
               meeting_date: str | None, webhook: str | None):
        """Check everything a job needs, then store it: an accepted job can be summarized."""
        summary = options_from_request(options)
        if not data:
            raise ApiError(400, f"{filename}: the transcript is empty (nothing to summarize)")
        # The format, the date and the webhook the store checks as it takes the job.
        parse_bytes(data, name=filename, fmt=input_format, max_bytes=summary.max_bytes)
        job = self.store.submit(data, filename=filename, options=summary,
                                input_format=input_format, meeting_date=meeting_date,
                                webhook=webhook)
        self.runner.notify()
        return job


class _LiveMetrics:
    """What the store and the outbox say at scrape time: the queue, and webhooks not yet
    delivered."""

    def __init__(self, service: Service):
        self.service = service

    def describe(self):
        return []

    def collect(self):
        counts = self.service.store.counts()
        jobs = GaugeMetricFamily("sumctl_serve_jobs", "Jobs in the store, by status.",
                                 labels=["status"])
        for status in ("pending", "running", "done", "failed"):
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        yield GaugeMetricFamily("sumctl_serve_queue_depth", "Jobs waiting or running.",
                                value=counts.get("pending", 0) + counts.get("running", 0))
        yield GaugeMetricFamily("sumctl_serve_workers_busy", "Workers summarizing now.",
                                value=self.service.runner.busy)
        outbox = self.service.outbox
        yield GaugeMetricFamily("sumctl_serve_webhooks_pending", "Webhook events not yet "
                                "delivered.", value=outbox.pending() if outbox else 0)


def options_from_request(given) -> SummaryOptions:
    """SummaryOptions from a JSON object or form fields (text), or a 422 naming the field."""
    if not isinstance(given, dict):
        raise ApiError(422, "options: must be a JSON object of summary options, e.g. "
                            '{"length": "short", "minutes": true}')
    unknown = sorted(set(given) - OPTION_FIELDS)
    if unknown:
        raise ApiError(422, f"options: unknown option {unknown[0]!r} (use one of "
                            f"{', '.join(sorted(OPTION_FIELDS))})")
    values = {}
    for name, value in given.items():
        if name in BOOL_FIELDS:
            value = flag_value(name, value)
        elif name in INT_FIELDS and isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ApiError(422, f"options.{name} {value!r}: must be a whole number of at "
                                    "least 1") from None
        elif name == "formats":
            value = tuple(value.split(",") if isinstance(value, str) else value or ())
        values[name] = value
    try:
        return SummaryOptions(**values)
    except SumctlError as e:
        raise ApiError(422, f"options: {e}") from None


def flag_value(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ApiError(422, f"options.{name} {value!r}: must be true or false")


def job_links(job_id: str) -> dict:
    return {"self": f"/v1/jobs/{job_id}", "summary_md": f"/v1/jobs/{job_id}/summary.md"}


def job_view(job) -> dict:
    return job.to_dict() | {"links": job_links(job.id)}


class Gate:
    """The ASGI layer every request passes first: the bearer token, the body limit (the
    declared Content-Length, and the bytes as they stream in), and a last catch that answers
    an unexpected error with one JSON line instead of a traceback in the log."""

    def __init__(self, app, *, token: str | None, max_body: int, verbose: bool):
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body
        self.verbose = verbose

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        if self.token and scope["path"].startswith(PROTECTED_PREFIXES) and \
                not self.authorized(headers.get("authorization", b"")):
            return await error_response(401, "missing or wrong token: send the header "
                                             "`Authorization: Bearer <token>` with the server's "
                                             "--token", {"WWW-Authenticate": "Bearer"}
                                        )(scope, receive, send)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return await error_response(400, "Content-Length is not a number")(
                    scope, receive, send)
            if int(declared) > self.max_body:
                return await self.too_large(int(declared))(scope, receive, send)
        received = 0
        started = False

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge()
            return message

        async def tracked(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await self.too_large(received)(scope, receive, send)
        except Exception as e:  # noqa: BLE001 - answered and logged in one line
            log.error("%s %s: %s: %s", scope.get("method"), scope["path"], type(e).__name__,
                      first_line(e), exc_info=self.verbose)
            if not started:
                await error_response(500, f"internal error ({type(e).__name__}); the server "
                                          "log has the details, run with --verbose for the "
                                          "traceback")(scope, receive, send)

    def authorized(self, header: bytes) -> bool:
        scheme, _, given = header.partition(b" ")
        # Compared in constant time, and compared even when the scheme is wrong.
        same = secrets.compare_digest(given.strip(), self.token)
        return same and scheme.lower() == b"bearer"

    def too_large(self, size: int) -> JSONResponse:
        return error_response(413, f"request body of {size:,}+ bytes is over the server's "
                                   f"{self.max_body:,}-byte limit (split the transcript, or "
                                   "start the server with a larger --max-upload-bytes)")


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="sumctl serve", version="1",
                  description="Meeting transcripts in, minutes out. Errors are "
                              '`{"error": "..."}` with a 4xx status.')
    add_error_handlers(app)
    app.include_router(jobs_router(service))
    app.include_router(service_router(service))
    app.include_router(page_router(service.settings))
    app.add_middleware(Gate, token=service.settings.token, max_body=service.settings.max_upload_bytes,
                       verbose=service.settings.verbose)
    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every error leaves as `{"error": "one line"}`: sumctl's own with the status that fits it,
    FastAPI's and Starlette's rewritten to say what to send instead."""

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return error_response(e.status, str(e), e.headers)

    @app.exception_handler(QueueFullError)
    async def queue_full(request, e):
        return error_response(429, f"{e} (retry later)", {"Retry-After": "5"})

    @app.exception_handler(InputError)
    async def bad_transcript(request, e):
        return error_response(422, f"{e} (send a transcript: plain text, WebVTT, SRT, JSON or "
                                   "DialogSum)")

    @app.exception_handler(StateError)
    async def state_error(request, e):
        log.error("%s", e)
        return error_response(503, f"{e} (the server cannot store jobs now; retry later)",
                              {"Retry-After": "30"})

    @app.exception_handler(SumctlError)
    async def sumctl_error(request, e):
        return error_response(422, str(e))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e):
        if e.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path} (see /docs)"
        elif e.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        else:
            message = str(e.detail)
        return error_response(e.status_code, message, getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, e):
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error_response(422, f"{where} {first.get('input')!r}: {first.get('msg')}")



def jobs_router(service: Service) -> APIRouter:
    """/v1/jobs: submit a transcript, list, poll, fetch and delete jobs."""
    router = APIRouter()
    accepting = anyio.CapacityLimiter(2)

    @router.post("/v1/jobs", status_code=202, openapi_extra={"requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}, "format": {"type": "string"},
            "date": {"type": "string"}, "webhook": {"type": "string"},
            "options": {"type": "string", "description": "a JSON object of summary options"},
            **{name: {"type": "string"} for name in sorted(OPTION_FIELDS)}}}},
        "application/json": {"schema": {"type": "object", "required": ["text"], "properties": {
            "text": {"type": "string"}, "filename": {"type": "string"},
            "format": {"type": "string", "enum": list(INPUT_FORMATS)},
            "options": {"type": "object"}, "date": {"type": "string"},
            "webhook": {"type": "string"}}}}}}})
    async def submit(request: Request):
        """Queue one transcript. Its options are checked and it is parsed first: a job that
        is accepted (202) can be summarized."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            request_fields = await read_form_body(request)
        elif ctype in ("application/json", ""):
            request_fields = await read_json_body(request)
        else:
            raise ApiError(415, f"Content-Type {ctype!r}: send multipart/form-data (a `file` "
                                "part) or application/json (a `text` field)")
        # Parsing, fsyncs and commits, a few at a time: twenty threads contending for the GIL
        # would slow every other request, /healthz included.
        job = await anyio.to_thread.run_sync(lambda: service.accept(**request_fields),
                                             limiter=accepting)
        return JSONResponse({"id": job.id, "status": job.status, "links": job_links(job.id)},
                            status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    @router.get("/v1/jobs")
    def list_jobs(limit: int = Query(50, ge=1, le=MAX_LIST_LIMIT), offset: int = Query(0, ge=0)):
        """The jobs, newest first, `limit` at a time."""
        jobs = service.store.list(limit=limit, offset=offset)
        total = service.store.count()
        more = offset + len(jobs) < total
        # A JSONResponse as it is: FastAPI's encoder would walk every job again, slowly.
        return JSONResponse({"jobs": [job_view(j) for j in jobs], "total": total, "limit": limit,
                             "offset": offset, "next": f"/v1/jobs?limit={limit}&offset="
                                                       f"{offset + limit}" if more else None})

    @router.get("/v1/jobs/{job_id}")
    def get_job(job_id: str):
        """The job's status; once done, `record` is the JSON record `sumctl summarize`
        writes."""
        job = known_job(service, job_id)
        view = job_view(job)
        if job.status == "done":
            view["record"] = service.store.record(job.id)
        return JSONResponse(view)

    @router.get("/v1/jobs/{job_id}/summary.md")
    def get_markdown(job_id: str):
        job = known_job(service, job_id)
        text = service.store.markdown(job.id) if job.status == "done" else None
        if text is None:
            raise ApiError(409, f"job {job.id} is {job.status}, not done: poll "
                                f"GET /v1/jobs/{job.id} until its status is done"
                           + (f" (it failed: {job.error})" if job.status == "failed" else ""))
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")

    @router.delete("/v1/jobs/{job_id}", status_code=204)
    def delete_job(job_id: str):
        """The job, its stored transcript and its results."""
        known_job(service, job_id)
        if not service.store.delete(job_id):
            raise ApiError(404, f"no job {job_id} (it was deleted meanwhile)")
        return Response(status_code=204)

    return router


def service_router(service: Service) -> APIRouter:
    """What an operator polls: liveness and Prometheus metrics."""
    router = APIRouter()

    @router.get("/healthz")
    async def healthz():
        # No database here: it answers while every worker and the disk are busy.
        return JSONResponse({"status": "ok", "workers_busy": service.runner.busy})

    @router.get("/metrics")
    def metrics():
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def page_router(settings: ServeSettings) -> APIRouter:
    """The browser page and its fixed list of static files."""
    router = APIRouter()
    pages = jinja2.Environment(loader=jinja2.FileSystemLoader(PAGE_DIR), autoescape=True)

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return pages.get_template("index.html").render(
            token_required=bool(settings.token), max_upload_bytes=settings.max_upload_bytes,
            formats=INPUT_FORMATS)

    @router.get("/static/{name}", include_in_schema=False)
    def page_file(name: str):
        if name not in PAGE_FILES:  # a fixed list, never a path
            raise ApiError(404, f"no such file: /static/{name}")
        return Response((PAGE_DIR / name).read_bytes(), media_type=PAGE_FILES[name])

    return router


def known_job(service: Service, job_id: str):
    job = service.store.get(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id!r} (list them with GET /v1/jobs; a deleted or "
                            "purged job is gone)")
    return job


async def read_form_body(request: Request) -> dict:
    try:
        form = await request.form(max_files=1, max_fields=64)
    except StarletteHTTPException as e:
        raise ApiError(400, f"unreadable multipart body ({e.detail}); send -F file=@meeting.vtt")
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "multipart body without a `file` part: send the transcript as "
                            "-F file=@meeting.vtt")
    data = await upload.read()
    fields = {k: v for k, v in form.multi_items() if k != "file" and isinstance(v, str)}
    options = {}
    if "options" in fields:
        options = json_object(fields.pop("options"), "options")
    formats = form.getlist("formats")
    for name, value in fields.items():
        if name in OPTION_FIELDS:
            options[name] = ",".join(formats) if name == "formats" else value
        elif name not in ("format", "date", "webhook", "filename"):
            raise ApiError(422, f"form field {name!r}: unknown (use file, format, date, webhook, "
                                f"options, or a summary option: {', '.join(sorted(OPTION_FIELDS))})")
    return {"data": data, "filename": client_filename(fields.get("filename") or upload.filename),
            "input_format": fields.get("format") or None, "options": options,
            "meeting_date": fields.get("date") or None, "webhook": fields.get("webhook") or None}


async def read_json_body(request: Request) -> dict:
    body = await request.body()
    if not body.strip():
        raise ApiError(400, "empty body: send a transcript as multipart (-F file=@meeting.vtt) "
                            'or as JSON ({"text": "..."})')
    payload = json_object(body, "body")
    unknown = sorted(set(payload) - {"text", "filename", "format", "options", "date", "webhook"})
    if unknown:
        raise ApiError(422, f"field {unknown[0]!r}: unknown (use text, filename, format, "
                            "options, date, webhook)")
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(422, '"text": missing or empty; put the transcript in it as one string')
    for name in ("filename", "format", "date", "webhook"):
        if payload.get(name) is not None and not isinstance(payload[name], str):
            raise ApiError(422, f'"{name}": must be a string')
    return {"data": text.encode("utf-8", "surrogatepass"),
            "filename": client_filename(payload.get("filename")),
            "input_format": payload.get("format"), "options": payload.get("options") or {},
            "meeting_date": payload.get("date"), "webhook": payload.get("webhook")}


def json_object(text, what: str) -> dict:
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"{what}: not JSON ({first_line(e)})") from None
    if not isinstance(value, dict):
        raise ApiError(422 if what == "options" else 400, f"{what}: must be a JSON object")
    return value


class GracefulServer(uvicorn.Server):
    """uvicorn, minus one habit: after its own shutdown it raises the signal that stopped it
    again, which would kill the process before the jobs in flight finish and the store closes.
    A second SIGINT still forces the exit."""

    def handle_exit(self, sig, frame) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


def run_service(settings: ServeSettings, *, listening: socket.socket) -> None:
    """Open the store, requeue what a crash interrupted, start the workers, and serve HTTP on
    `listening` until SIGINT or SIGTERM; then finish the jobs in flight and close."""
    configure_logging(json_lines=False, verbose=settings.verbose)
    # The event loop answers every request on one thread, which waits for the GIL whenever a
    # worker or an upload's parse holds it: hand it over every 1 ms instead of every 5 ms, so
    # that /healthz and polls stay quick while a worker runs Python (the extractive model,
    # the minutes' cues).
    sys.setswitchinterval(0.001)
    service = Service(settings)
    try:
        service.start()
    except BaseException:
        service.stop()
        raise
    try:
        host, port = listening.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        log.info("listening on http://%s:%d (state %s%s)", shown, port, settings.state_dir,
                 ", token required" if settings.token else "")
        if settings.webhook_url:
            log.info("webhooks to %s, signed with the secret in %s (or as given)",
                     settings.webhook_url, service.secret_path)
        config = uvicorn.Config(create_app(service), log_level="info", lifespan="off",
                                server_header=False, timeout_graceful_shutdown=10)
        GracefulServer(config).run(sockets=[listening])
    finally:
        log.info("stopping: finishing the jobs in flight")
        service.stop()
        log.info("stopped")

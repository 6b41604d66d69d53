"""`sumctl serve`: the HTTP service (cli/serve_app.py) behind a command, and its systemd unit.

Nothing here imports FastAPI or uvicorn at module level: `sumctl --help` must stay as light as
the edge install, which has neither. The command imports cli/serve_app.py only once it runs.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from pathlib import Path

import click

from sumctl.runtime.store import data_dir
from sumctl.runtime.transcript import max_bytes_default
from sumctl.runtime.webhooks import SECRET_ENV

from sumctl.cli.options import model_option

DEFAULT_PORT = 8765
TOKEN_ENV = "SUMCTL_SERVE_TOKEN"
SYSTEMD_STATE = Path("/var/lib/sumctl")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class DurationType(click.ParamType):
    """`7d`, `12h`, `30m`, `90s` or plain seconds, as seconds (a float above zero)."""

    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(value).lower())
        if not match or float(match.group(1)) <= 0:
            self.fail(f"{value!r} is not a duration above zero (write e.g. 7d, 12h, 30m or 90s)",
                      param, ctx)
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def default_state_dir() -> Path:
    return data_dir() / "serve"


@click.command()
@model_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --token (or, on a network "
                   "you trust, --insecure-no-auth).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="TCP port (0: any free port; the log says which).")
@click.option("--state", "state_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None,
              help="Folder for the job database, the stored transcripts and results, and the "
                   "webhook outbox. One server per folder. Default: $SUMCTL_HOME/serve.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=1, show_default=True,
              help="Jobs summarized at once; each worker loads the model once.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads per worker. Default: cores / workers.")
@click.option("--token", envvar=TOKEN_ENV, default=None, metavar="TOKEN",
              help=f"Require `Authorization: Bearer TOKEN` on /v1/* and /metrics (compared in "
                   f"constant time). Default: ${TOKEN_ENV}; prefer it to the flag, which other "
                   "users can read in `ps`.")
@click.option("--insecure-no-auth", is_flag=True,
              help="Allow a non-loopback --host without a token: anyone who reaches the port "
                   "can submit, read and delete jobs.")
@click.option("--webhook", "webhook_url", default=None, metavar="URL",
              help="POST a signed JSON event here when any job ends (a job may name its own "
                   "too). Retried with backoff for a day, each with an idempotency key.")
@click.option("--webhook-secret", envvar=SECRET_ENV, default=None, metavar="SECRET",
              help=f"The HMAC-SHA256 key webhooks are signed with. Default: ${SECRET_ENV}, "
                   "else a random one kept in STATE/webhook-secret (0600).")
@click.option("--retention", type=DurationType(), default=None, metavar="DURATION",
              help="Delete finished jobs, their transcripts and results this long after they "
                   "end (7d, 12h, 30m). Default: keep them until DELETE /v1/jobs/{id}.")
@click.option("--max-upload-bytes", type=click.IntRange(min=1), default=None,
              help="Refuse a request body larger than this with 413, before reading it all. "
                   "Default: the transcript cap ($SUMCTL_MAX_BYTES or 50 MiB) plus 64 KiB.")
@click.option("--max-queue", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Jobs waiting at most; more are refused with 429 until some finish.")
@click.option("--systemd-unit", is_flag=True,
              help="Print a hardened systemd unit that runs this command with these options, "
                   "and exit.")
@click.option("--verbose", "-v", is_flag=True, help="Also log tracebacks of server errors.")
@click.pass_context
def serve(ctx, model, host, port, state_dir, workers, threads, token, insecure_no_auth,
          webhook_url, webhook_secret, retention, max_upload_bytes, max_queue, systemd_unit,
          verbose):
    """Run summaries as a local HTTP service: a JSON API, webhooks and a web page.

    Other tools (a recorder, n8n, a cron job, a colleague's browser) submit transcripts and get
    the same minutes and JSON record as `sumctl summarize`. The page at / takes a dropped
    file; the API is documented at /docs (OpenAPI).

    \b
    Endpoints:
      POST   /v1/jobs                 a transcript: multipart `file` (+ form fields), or JSON
                                      {"text", "filename", "format", "options", "date",
                                      "webhook"}; 202 with the job's id at once
      GET    /v1/jobs/{id}            its status; when done, the summary record
      GET    /v1/jobs/{id}/summary.md the minutes as Markdown
      GET    /v1/jobs?limit=&offset=  the jobs, newest first
      DELETE /v1/jobs/{id}            the job, its transcript and its results
      GET    /healthz, /metrics       liveness; Prometheus metrics
    Every error is JSON, {"error": "..."}, naming the problem and the fix.

    \b
    What makes it safe to leave running:
      - It listens on 127.0.0.1 unless told otherwise, and a non-loopback --host is refused
        without --token or --insecure-no-auth.
      - Bodies over --max-upload-bytes get 413 before they are read; a full queue 429.
      - Options and the transcript are checked before a job is accepted: an accepted job
        can be summarized.
      - Jobs live in SQLite (WAL) in --state, transcripts with mode 0600. A kill -9 or a
        power cut loses no accepted job, and a restart redoes only the interrupted ones.
      - No endpoint reads or writes a path that the client names.
      - SIGINT and SIGTERM stop accepting, give the jobs in flight 30 s to finish (an
        unfinished one runs again at the next start) and exit 0.

    \b
    Examples:
      sumctl serve
      sumctl serve --model bundles/flan-t5-int8 --workers 2 --retention 30d
      SUMCTL_SERVE_TOKEN=$(openssl rand -hex 32) sumctl serve --host 0.0.0.0
      sumctl serve --webhook https://n8n.example/webhook/minutes
      sumctl serve --systemd-unit | sudo tee /etc/systemd/system/sumctl.service
      curl -F file=@meeting.vtt http://127.0.0.1:8765/v1/jobs
    """
    if systemd_unit:  # the token comes from the unit's EnvironmentFile, not from this shell
        click.echo(systemd_unit_text(ctx, state_dir), nl=False)
        return
    from sumctl.runtime.batch.ray_engine import is_loopback  # the rule batch's Ray cluster keeps

    if not is_loopback(host) and not token and not insecure_no_auth:
        # Exit status 2, as click's usage errors, but one line: the fix is in it.
        click.echo(f"Error: --host {host} is not loopback: anyone who reaches it could use the "
                   f"service; set a token (--token or ${TOKEN_ENV}) or pass --insecure-no-auth",
                   err=True)
        ctx.exit(2)
    if token is not None and len(token) < 16:
        raise click.BadParameter("a token shorter than 16 characters is guessable; use e.g. "
                                 "`openssl rand -hex 32`", param_hint="--token")

    try:
        from sumctl.cli.serve_app import ServeSettings, run_service
    except ModuleNotFoundError as e:
        if (e.name or "").startswith("sumctl"):
            raise
        raise click.ClickException(f"sumctl serve needs {e.name}, which the edge install "
                                   "leaves out: pip install 'sumctl[serve]'") from None

    state_dir = state_dir or default_state_dir()
    run_service(ServeSettings(
        model=model, state_dir=state_dir, workers=workers, threads=threads, token=token,
        webhook_url=webhook_url, webhook_secret=webhook_secret, retention_seconds=retention,
        max_upload_bytes=max_upload_bytes or max_bytes_default() + 64 * 1024,
        max_queue=max_queue, verbose=verbose),
        listening=bind(host, port))


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any model loads: a port in use is one line at once,
    not a log message after the start-up."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise click.BadParameter(f"{host!r} is not an address of this machine ({e.strerror})",
                                 param_hint="--host") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise click.ClickException(
            f"--host {host} --port {port}: cannot listen ({e.strerror}); choose another --port "
            "or stop the server already using it") from None
    sock.set_inheritable(True)
    return sock


# The options the unit passes on as given; --state and --systemd-unit it sets itself, and the
# secrets go in an EnvironmentFile, never in the unit (any user can read it with systemctl cat).
_UNIT_SKIPS = {"state_dir", "systemd_unit", "token", "webhook_secret"}


def systemd_unit_text(ctx: click.Context, state_dir: Path | None) -> str:
    executable = shutil.which("sumctl") or str(Path(sys.executable).with_name("sumctl"))
    executable = os.path.realpath(executable) if os.path.exists(executable) else executable
    state = Path(os.path.abspath(state_dir)) if state_dir else SYSTEMD_STATE
    args = [executable, "serve", "--state", str(state)]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in _UNIT_SKIPS or value is None or value is False or not param.opts:
            continue
        if ctx.get_parameter_source(param.name) == click.core.ParameterSource.DEFAULT:
            continue
        flag = max(param.opts, key=len)
        if param.name == "model" and os.path.exists(value):
            value = os.path.abspath(value)
        args += [flag] if value is True else [flag, str(ctx.params[param.name])
                                              if param.name != "retention" else f"{value:g}s"]
    home_note = ""
    protect_home = "yes"
    if Path(executable).is_relative_to("/home") or Path(executable).is_relative_to("/root"):
        # The unit must still reach its own interpreter: read-only, not hidden.
        protect_home = "read-only"
        home_note = ("# sumctl is installed under a home folder: the service needs to read it "
                     "(and DynamicUser needs its folders world-readable).\n")
    exec_start = " ".join(unit_quote(a) for a in args)
    return f"""# sumctl serve, hardened. Install:
#   sumctl serve --systemd-unit [options] | sudo tee /etc/systemd/system/sumctl.service
#   sudo systemctl daemon-reload && sudo systemctl enable --now sumctl
# Secrets go in /etc/sumctl/serve.env (mode 0600), never in this file:
#   {TOKEN_ENV}=...  {SECRET_ENV}=...
{home_note}[Unit]
Description=sumctl serve: meeting transcripts summarized over HTTP
After=network.target

[Service]
Type=exec
ExecStart={exec_start}
EnvironmentFile=-/etc/sumctl/serve.env
Environment=SUMCTL_HOME={SYSTEMD_STATE}/home
DynamicUser=yes
StateDirectory=sumctl
StateDirectoryMode=0700
ReadWritePaths={unit_quote(str(state))}
UMask=0077
ProtectSystem=strict
ProtectHome={protect_home}
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
SystemCallArchitectures=native
Restart=on-failure
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
"""


def unit_quote(word: str) -> str:
    """One ExecStart word as systemd reads it: `%` doubled, and quoted when it holds a space or
    a quote."""
    word = word.replace("%", "%%")
    if re.fullmatch(r"[\w@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def register(cli: click.Group) -> None:
    cli.add_command(serve)

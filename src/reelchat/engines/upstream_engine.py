"""An engine that has another OpenAI-Videos-API server make the video (reelchat, SGLang, vLLM-Omni, LiteLLM, ...).

reelchat keeps its own tenants, tasks, chat, pages and media; the upstream only renders. This module
holds the engine: its client, how it makes a job of a request (`prepare`), and the deadline around
each job. One job's steps are `upstream_job`, its requests' retry policy `upstream_retry`.

The SDK's own retries are off (`max_retries=0`): the policy is ours and explicit. Every failure ends
in an EngineError with a stable `code`; the whole job is bounded by `UpstreamServer.deadline_s`, so
nothing here can hang. The API key never reaches a log line or an error message (upstream error text
is scrubbed of it too, in case a server echoes it).
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit, urlunsplit

import openai

from .base import EngineCancelled, EngineError, EngineResult, JobRequest, Reporter, SourceVideo
from .upstream_job import UpstreamRun
from .upstream_spec import UpstreamJob, UpstreamRemix, UpstreamServer, UpstreamSpec

log = logging.getLogger("reelchat.engines.upstream")

MESSAGE_CHARS = 400  # upstream text quoted in an error, at most


class UpstreamEngine:
    """Engine over an OpenAI Videos API server; one instance per catalog entry, shared by its jobs."""

    def __init__(self, server: UpstreamServer) -> None:
        self.server = server
        self.where = _display_url(server.base_url)
        self._client: openai.AsyncOpenAI | None = None
        self._secret = ""

    async def prepare(self, spec: UpstreamSpec, request: JobRequest) -> UpstreamJob:
        """The job for `request`. A remix's source can be remixed upstream only where it was made:
        its upstream id goes along only when its model is served by this same upstream."""
        remix: UpstreamRemix | None = None
        source = request.source
        if source is not None and request.extend:
            return self._extension(spec, request, source)
        if source is not None:
            made_here = (
                isinstance(source.made_by, UpstreamSpec) and source.made_by.upstream.base_url == spec.upstream.base_url
            )
            remix = UpstreamRemix(
                video=source.mp4,
                upstream_id=source.upstream_job_id if made_here else None,
                instruction=request.instruction,
            )
        return UpstreamJob(
            prompt=request.prompt,
            width=request.width,
            height=request.height,
            seconds=request.seconds,
            image=request.image,
            remix=remix,
            task_id=request.task_id,
        )

    def _extension(self, spec: UpstreamSpec, request: JobRequest, source: SourceVideo) -> UpstreamJob:
        """An extension goes to the upstream's /videos/extensions, for a video that upstream made; there
        is no other way to continue it here, so anything else fails with the reason (never a remix)."""
        made_here = (
            isinstance(source.made_by, UpstreamSpec) and source.made_by.upstream.base_url == spec.upstream.base_url
        )
        if not self.server.supports_extensions:
            raise EngineError(
                f"The upstream at {self.where} has no /videos/extensions (supports_extensions is off), so this "
                "model can't extend videos.",
                code="extend_unsupported",
            )
        if not made_here or source.upstream_job_id is None:
            raise EngineError(
                f"The upstream at {self.where} can only extend videos it made; this one was not.",
                code="extend_unsupported",
            )
        return UpstreamJob(
            prompt=request.instruction,
            width=request.width,
            height=request.height,
            extend_id=source.upstream_job_id,
            extend_seconds=request.extend_seconds,
            task_id=request.task_id,
        )

    async def generate(self, job: UpstreamJob, reporter: Reporter) -> EngineResult:
        if reporter.cancelled():
            raise EngineCancelled()
        run = UpstreamRun(self.server, self.where, self._get_client(), reporter, self.scrub)
        try:
            # The hard wall: whatever an upstream does (or doesn't), the job ends by the deadline.
            async with asyncio.timeout(self.server.deadline_s):
                return await run.execute(job)
        except TimeoutError:
            await run.discard()  # stop the upstream burning GPU time on a job nobody will collect
            raise EngineError(
                f"The upstream at {self.where} did not finish the video within {self.server.deadline_s:g} s.",
                code="upstream_timeout",
            ) from None
        except EngineCancelled:
            await run.discard()
            raise

    async def load(self) -> None:
        """Nothing to load: the upstream server holds the model."""

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def scrub(self, text: str) -> str:
        """Upstream text made safe to show: the API key cut out, the length bounded."""
        if self._secret and len(self._secret) >= 4 and self._secret != "none":  # noqa: S105  ("none" is the no-key sentinel, not a password)
            text = text.replace(self._secret, "[redacted]")
        text = " ".join(text.split())
        return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            try:
                secret = self.server.api_key()
            except OSError as e:
                raise EngineError(
                    f"Cannot read the upstream API key file {self.server.api_key_file}: {e.strerror or e}.",
                    code="upstream_misconfigured",
                ) from None
            if not secret and self.server.api_key_env:
                log.warning("upstream %s: environment variable %s is empty", self.where, self.server.api_key_env)
            self._secret = secret
            client = openai.AsyncOpenAI(
                base_url=self.server.base_url,
                # the SDK refuses an empty key; keyless upstreams accept any bearer token
                api_key=secret or "none",
                organization=self.server.organization,
                project=self.server.project,
                max_retries=0,  # retries are ours (see upstream_retry), so the policy is explicit and bounded
                timeout=self.server.request_timeout_s,
                # not this process's environment: no HTTP(S)_PROXY detour, no ~/.netrc credentials
                http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
            )
            # The SDK fills a None organization/project from OPENAI_ORG_ID/OPENAI_PROJECT_ID, which
            # belong to whoever runs this server, not to this upstream: only the catalog's count.
            client.organization, client.project = self.server.organization, self.server.project
            self._client = client
        return self._client


def _display_url(url: str) -> str:
    """The base URL for messages: without userinfo or query, which may carry credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the upstream"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))

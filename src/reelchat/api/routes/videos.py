"""The OpenAI Videos API (/v1/videos) over the same tasks and videos as the chat API."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, ValidationInfo, field_validator
from starlette.convertors import StringConvertor, register_url_convertor

from ...domain import MAX_PROMPT_CHARS, InputImage, Task, TaskStatus, VideoRequest
from ...protocol.response_schema import VideoDeleted, VideoList, VideoObject
from ...protocol.views import video_object
from ...service import idempotency, video_edits
from ..body_parser import BodyParser
from ..contract import documented
from ..deps import AppState, CallerDep, StateDep, TenantDep
from ..errors import ApiError, validation_error
from ..forms import Upload, is_form, read_fields
from .media import MEDIA_CONTENT, RANGES, serve_media

router = APIRouter()


class VideoIdConvertor(StringConvertor):
    """A path segment naming a video: any but `edits`, `characters` and `extensions`, the sibling operations'
    own paths, so that `GET /v1/videos/edits` is a 405 (`Allow: POST`) rather than a 404 for a video named
    "edits"."""

    regex = r"(?!(?:edits|characters|extensions)(?:/|$))[^/]+"


register_url_convertor("video_id", VideoIdConvertor())  # idempotent: the same name, the same rule

DEFAULT_MODEL = "sora-2"
FORM = "form"  # the validation context of a multipart or urlencoded body: every value is text


def _whole(v: Any) -> int | None:
    """A JSON number without a fraction (10 or 10.0: JSON Schema's integer), else None. Never a bool."""
    if isinstance(v, bool):
        return None
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v if isinstance(v, int) else None


class ImageReference(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image_url: StrictStr


def _whole_seconds(v: Any) -> Any:
    # the SDK sends seconds as a string ("4", "8", "12"); JSON clients may send a number
    if isinstance(v, str):
        v = v.strip()
        if not v.isdigit():
            raise ValueError('seconds must be a whole number of seconds, e.g. "10"')
        return int(v)
    if _whole(v) is None and v is not None:
        raise ValueError('seconds must be a whole number of seconds, e.g. "10"')
    return _whole(v)


class CreateVideoBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: StrictStr = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    model: StrictStr = DEFAULT_MODEL
    seconds: int | None = None
    size: StrictStr | None = None
    input_reference: ImageReference | StrictStr | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)

    _seconds = field_validator("seconds", mode="before")(_whole_seconds)

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, v: Any, info: ValidationInfo) -> Any:
        # a whole number; a form carries it as text, JSON as a number (never "5", 5.0 or true)
        if isinstance(v, str) and info.context == FORM and v.isascii() and v.isdigit():
            return int(v)
        if _whole(v) is None and v is not None:
            raise ValueError("seed must be a whole number")
        return _whole(v)


class VideoReference(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: StrictStr = Field(min_length=1)


class ExtendBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: StrictStr = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    seconds: int
    video: VideoReference | None = None  # None: an uploaded file (multipart)
    model: StrictStr | None = None  # beyond OpenAI's shape: the model that extends an uploaded file

    _seconds = field_validator("seconds", mode="before")(_whole_seconds)


class RemixBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    prompt: StrictStr = Field(min_length=1, max_length=MAX_PROMPT_CHARS)


def video_json(task: Task, source: Task | None) -> dict[str, Any]:
    extended = task.params.get("extend") is True
    obj = video_object(task, source_video_id=source.video_id if source is not None and not extended else None)
    if extended:  # beyond OpenAI's shape: which video this one continues
        obj["extended_from_video_id"] = source.video_id if source is not None else None
    # extras beyond OpenAI's shape, so a client can move to the chat API and the pages
    obj["task_id"] = task.id
    obj["sid"] = task.sid if task.status is TaskStatus.COMPLETED else None
    return obj


async def _source_of(state: AppState, task: Task) -> Task | None:
    return await state.service.get(task.remixed_from) if task.remixed_from else None


def poll_headers(state: AppState, task: Task) -> dict[str, str]:
    if task.status.finished:
        return {}
    return {"openai-poll-after-ms": str(state.settings.poll_after_ms)}


def _idempotency(request: Request, what: str, body: Any) -> idempotency.Idempotency | None:
    header = request.headers.get("idempotency-key")
    return idempotency.from_header(header, idempotency.request_hash(what, body)) if header is not None else None


async def _read_create(request: Request, bodies: BodyParser) -> tuple[CreateVideoBody, InputImage | None]:
    data, files = await read_fields(request, bodies, files=("input_reference",))
    upload = files.get("input_reference")
    if upload is not None:
        data.pop("input_reference", None)
    context = FORM if is_form(request) else None
    try:
        parsed = CreateVideoBody.model_validate(data, context=context)
    except ValidationError as e:
        raise validation_error(e) from e
    return parsed, InputImage(upload.data, upload.content_type) if upload is not None else None


@router.post(
    "/v1/videos",
    **documented(
        json=CreateVideoBody,
        form=CreateVideoBody,
        files=["input_reference"],
        ok=VideoObject,
        errors=[400, 404, 409, 429],
    ),
)
async def create_video(request: Request, state: StateDep, caller: CallerDep) -> JSONResponse:
    body, image = await _read_create(request, state.bodies)
    ref = body.input_reference
    image_url = ref.image_url if isinstance(ref, ImageReference) else ref
    fingerprint = body.model_dump()
    if image is not None:
        fingerprint["input_reference"] = hashlib.sha256(image.data).hexdigest()
    idem = _idempotency(request, "POST /v1/videos", fingerprint)
    task = await state.service.submit(
        caller.tenant,
        VideoRequest(
            model=body.model,
            prompt=body.prompt,
            seconds=body.seconds,
            size=body.size,
            seed=body.seed,
            image=image,
            image_url=image_url if image is None else None,
        ),
        origin="videos",
        key=caller.key,
        idem=idem,
    )
    return JSONResponse(video_json(task, await _source_of(state, task)), headers=poll_headers(state, task))


@router.get("/v1/videos", **documented(ok=VideoList, errors=[400, 404]))
async def list_videos(
    state: StateDep,
    tenant: TenantDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    if after is not None:
        await state.service.get_video(tenant, after)  # 404 for an unknown cursor, not an empty page
    page, has_more = await state.service.list_videos(tenant, after=after, limit=limit, order=order)
    data = [video_json(t, await _source_of(state, t)) for t in page]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


@router.get("/v1/videos/{video_id:video_id}", **documented(ok=VideoObject, errors=[404]))
async def retrieve_video(video_id: str, state: StateDep, tenant: TenantDep) -> JSONResponse:
    task = await state.service.get_video(tenant, video_id)
    return JSONResponse(video_json(task, await _source_of(state, task)), headers=poll_headers(state, task))


@router.delete("/v1/videos/{video_id:video_id}", **documented(ok=VideoDeleted, errors=[404]))
async def delete_video(video_id: str, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    task = await state.service.delete(tenant, video_id)
    return {"id": task.video_id, "object": "video.deleted", "deleted": True}


@router.get(
    "/v1/videos/{video_id:video_id}/content",
    **documented(ok_content=MEDIA_CONTENT, errors=[400, 404, 409], extra=RANGES),
)
async def download_video(
    video_id: str,
    request: Request,
    state: StateDep,
    tenant: TenantDep,
    variant: Literal["video", "thumbnail", "spritesheet"] = "video",
) -> Response:
    task = await state.service.get_video(tenant, video_id)
    if task.status is not TaskStatus.COMPLETED:
        raise ApiError(
            409,
            f"Video '{video_id}' is {task.status.value}; content is available once it is completed.",
            param="video_id",
            code="video_not_ready",
        )
    name = {"video": task.video_name, "thumbnail": task.thumbnail_name, "spritesheet": task.spritesheet_name}[variant]
    if name is None:
        raise ApiError(404, f"Video '{video_id}' has no {variant}.", param="variant", code="not_found")
    ext = name.rsplit(".", 1)[-1]
    return await serve_media(state.storage, name, request, download_name=f"{task.video_id}.{ext}", private=True)


@router.post(
    "/v1/videos/{video_id:video_id}/remix",
    **documented(json=RemixBody, form=RemixBody, ok=VideoObject, errors=[400, 404, 409, 429]),
)
async def remix_video(video_id: str, request: Request, state: StateDep, caller: CallerDep) -> JSONResponse:
    source = await state.service.resolve_source(caller.tenant, video_id=video_id)
    data, _files = await read_fields(request, state.bodies)
    try:
        body = RemixBody.model_validate(data)
    except ValidationError as e:
        raise validation_error(e) from e
    task = await state.service.submit(
        caller.tenant,
        VideoRequest(model=source.model, prompt=body.prompt),
        origin="videos",
        source=source,
        key=caller.key,
        idem=_idempotency(request, f"POST /v1/videos/{video_id}/remix", body.model_dump()),
    )
    return JSONResponse(video_json(task, source), headers=poll_headers(state, task))


async def _read_extend(request: Request, bodies: BodyParser) -> tuple[ExtendBody, Upload | None]:
    data, files = await read_fields(request, bodies, files=("video",))
    upload = files.get("video")
    try:
        body = ExtendBody.model_validate(data)
    except ValidationError as e:
        raise validation_error(e) from e
    if (body.video is None) == (upload is None):
        raise ApiError(
            400,
            'Give the video to extend as video={"id": "<video id>"} or as an uploaded file, one of the two.',
            param="video",
            code="missing_video" if upload is None else "invalid_value",
        )
    return body, upload


@router.post(
    "/v1/videos/extensions",
    **documented(json=ExtendBody, form=ExtendBody, files=["video"], ok=VideoObject, errors=[400, 404, 409, 429]),
)
async def extend_video(request: Request, state: StateDep, caller: CallerDep) -> JSONResponse:
    body, upload = await _read_extend(request, state.bodies)
    fingerprint = body.model_dump()
    if upload is not None:
        fingerprint["video"] = hashlib.sha256(upload.data).hexdigest()
    task, source = await video_edits.extend(
        state.service,
        caller.tenant,
        body.prompt,
        seconds=body.seconds,
        video_id=body.video.id if body.video is not None else None,
        upload=upload.data if upload is not None else None,
        model=body.model,
        key=caller.key,
        idem=_idempotency(request, "POST /v1/videos/extensions", fingerprint),
    )
    return JSONResponse(video_json(task, source), headers=poll_headers(state, task))

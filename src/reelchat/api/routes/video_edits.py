"""The Videos API's edits and characters: `POST /v1/videos/edits`, `POST /v1/videos/characters`,
`GET /v1/videos/characters/{character_id}`.

An edit makes a new video from a source video and a prompt, the source being a completed video of the
caller's (`video: {"id": ...}`) or an uploaded file; a character is a name and a reference frame
taken from a video, which later prompts call by name. Request shapes: `protocol.video_edits`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ...protocol.video_edits import CreateCharacterBody, EditVideoBody, character_object
from ..deps import StateDep, TenantDep
from ..errors import validation_error
from ..forms import read_fields
from .videos import poll_headers, video_json

router = APIRouter()


def _without_upload(data: dict[str, Any], uploaded: bool) -> dict[str, Any]:
    # an uploaded file part named `video` wins over a text field of the same name
    return {k: v for k, v in data.items() if k != "video"} if uploaded else data


@router.post("/v1/videos/edits")
async def edit_video(request: Request, state: StateDep, tenant: TenantDep) -> JSONResponse:
    data, files = await read_fields(request, state.bodies, files=("video",))
    upload = files.get("video")
    try:
        body = EditVideoBody.model_validate(_without_upload(data, upload is not None))
    except ValidationError as e:
        raise validation_error(e) from e
    task, source = await state.service.edit(
        tenant,
        body.prompt,
        video_id=body.video.id if body.video is not None else None,
        upload=upload.data if upload is not None else None,
        model=body.model,
    )
    return JSONResponse(video_json(task, source), headers=poll_headers(state, task))


@router.post("/v1/videos/characters")
async def create_character(request: Request, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    data, files = await read_fields(request, state.bodies, files=("video",))
    upload = files.get("video")
    try:
        body = CreateCharacterBody.model_validate(_without_upload(data, upload is not None))
    except ValidationError as e:
        raise validation_error(e) from e
    character = await state.service.create_character(
        tenant,
        body.name,
        video_id=body.video.id if body.video is not None else None,
        upload=upload.data if upload is not None else None,
    )
    return character_object(character)


@router.get("/v1/videos/characters/{character_id}")
async def get_character(character_id: str, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    return character_object(await state.service.character(tenant, character_id))

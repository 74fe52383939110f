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

from ...protocol.response_schema import CharacterObject, VideoObject
from ...protocol.video_edits import (
    CharacterUploadBody,
    CreateCharacterBody,
    EditUploadBody,
    EditVideoBody,
    character_object,
)
from ...service import video_edits
from ..contract import documented
from ..deps import CallerDep, StateDep, TenantDep
from ..errors import validation_error
from ..forms import read_fields
from .videos import poll_headers, video_json

router = APIRouter()


def _without_upload(data: dict[str, Any], uploaded: bool) -> dict[str, Any]:
    # an uploaded file part named `video` wins over a text field of the same name
    return {k: v for k, v in data.items() if k != "video"} if uploaded else data


@router.post(
    "/v1/videos/edits",
    **documented(
        json=EditVideoBody,
        form=EditVideoBody,
        files=["video"],
        ok=VideoObject,
        errors=[400, 404, 409, 429],
    ),
)
async def edit_video(request: Request, state: StateDep, caller: CallerDep) -> JSONResponse:
    data, files = await read_fields(request, state.bodies, files=("video",))
    upload = files.get("video")
    try:
        if upload is not None:
            fields: EditUploadBody = EditUploadBody.model_validate(_without_upload(data, True))
            video_id = None
        else:
            body = EditVideoBody.model_validate(data)
            fields, video_id = body, body.video.id
    except ValidationError as e:
        raise validation_error(e) from e
    task, source = await video_edits.edit(
        state.service,
        caller.tenant,
        fields.prompt,
        video_id=video_id,
        upload=upload.data if upload is not None else None,
        model=fields.model,
        key=caller.key,
    )
    return JSONResponse(video_json(task, source), headers=poll_headers(state, task))


@router.post(
    "/v1/videos/characters",
    **documented(
        json=CreateCharacterBody,
        form=CreateCharacterBody,
        files=["video"],
        ok=CharacterObject,
        errors=[400, 404, 409],
    ),
)
async def create_character(request: Request, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    data, files = await read_fields(request, state.bodies, files=("video",))
    upload = files.get("video")
    try:
        if upload is not None:
            fields: CharacterUploadBody = CharacterUploadBody.model_validate(_without_upload(data, True))
            video_id = None
        else:
            body = CreateCharacterBody.model_validate(data)
            fields, video_id = body, body.video.id
    except ValidationError as e:
        raise validation_error(e) from e
    character = await state.service.create_character(
        tenant, fields.name, video_id=video_id, upload=upload.data if upload is not None else None
    )
    return character_object(character)


@router.get("/v1/videos/characters/{character_id}", **documented(ok=CharacterObject, errors=[404]))
async def get_character(character_id: str, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    return character_object(await state.service.character(tenant, character_id))

"""Wire shapes of the Videos API's edits and characters (`POST /v1/videos/edits`, `/v1/videos/characters`).

They mirror openai-python's `VideoEditParams`, `VideoCreateCharacterParams` and the character responses.
Bodies arrive as JSON or as a form (the SDK always sends multipart): `video` is then either an uploaded
file part, which the route takes aside, or `{"id": ...}` (`video[id]` in a form). Unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from ..domain import MAX_CHARACTER_NAME_CHARS, MAX_PROMPT_CHARS, Character

__all__ = [
    "CharacterUploadBody",
    "CreateCharacterBody",
    "EditUploadBody",
    "EditVideoBody",
    "VideoReference",
    "character_object",
]


class VideoReference(BaseModel):
    """A completed video of the caller's, by id."""

    model_config = ConfigDict(extra="ignore")
    id: StrictStr = Field(min_length=1, max_length=200)


class EditUploadBody(BaseModel):
    """An edit's fields besides its video, when the video is an uploaded file part."""

    model_config = ConfigDict(extra="ignore")

    prompt: StrictStr = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    # not in OpenAI's params: which model edits an uploaded video (a video id edits with its own model)
    model: StrictStr | None = None


class EditVideoBody(EditUploadBody):
    """`POST /v1/videos/edits`: a video is required, `{"id": ...}` here or an uploaded file part in a form."""

    video: VideoReference


class CharacterUploadBody(BaseModel):
    """A character's fields besides its video, when the video is an uploaded file part."""

    model_config = ConfigDict(extra="ignore")

    # at most MAX_CHARACTER_NAME_CHARS as sent: the service collapses whitespace and refuses a blank name
    name: StrictStr = Field(min_length=1, max_length=MAX_CHARACTER_NAME_CHARS)


class CreateCharacterBody(CharacterUploadBody):
    """`POST /v1/videos/characters`: a video is required, `{"id": ...}` here or an uploaded file part in a form."""

    video: VideoReference


def character_object(character: Character) -> dict[str, Any]:
    """openai-python's `VideoCreateCharacterResponse` / `VideoGetCharacterResponse`."""
    return {"id": character.id, "created_at": int(character.created_at.timestamp()), "name": character.name}

"""The body of `POST /v1/chat/completions`: pydantic models of the request, its messages and parts.

Only what a video turn reads is typed (text parts and image_url parts); every other OpenAI field
and part type is accepted and ignored. `message_text` and `message_images` read a message's content.

Pure: no I/O, no web framework.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    StrictBool,
    StrictStr,
    Tag,
)

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "ContentPart",
    "ImageURL",
    "ImageUrlPart",
    "OtherPart",
    "TextPart",
    "message_images",
    "message_text",
]


PART_TYPES: list[JsonValue] = ["text", "image_url"]  # the part types a video turn reads


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: StrictStr


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: StrictStr
    detail: StrictStr | None = None


class ImageUrlPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["image_url"]
    image_url: ImageURL | StrictStr

    @property
    def url(self) -> str:
        return self.image_url if isinstance(self.image_url, str) else self.image_url.url


class OtherPart(BaseModel):
    """A content part of a type we do not use (audio, file, refusal, …): accepted and ignored."""

    # documented as what `_part_tag` routes here: any type but the two we read
    model_config = ConfigDict(
        extra="allow", json_schema_extra={"properties": {"type": {"type": "string", "not": {"enum": PART_TYPES}}}}
    )

    type: StrictStr


def _part_tag(v: Any) -> str:
    t = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
    if t == "text":
        return "text"
    if t == "image_url":
        return "image_url"
    return "other"


ContentPart = Annotated[
    Annotated[TextPart, Tag("text")] | Annotated[ImageUrlPart, Tag("image_url")] | Annotated[OtherPart, Tag("other")],
    Discriminator(_part_tag),
]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: StrictStr
    content: StrictStr | list[ContentPart] | None = None


class ChatCompletionRequest(BaseModel):
    """The body of `POST /v1/chat/completions`. Other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False


def message_text(message: ChatMessage) -> str:
    """The text of a message: its string content, or its text parts joined with newlines."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p.text for p in content if isinstance(p, TextPart))


def message_images(message: ChatMessage) -> tuple[str, ...]:
    """The urls of a message's image_url parts, in order."""
    content = message.content
    if content is None or isinstance(content, str):
        return ()
    return tuple(p.url for p in content if isinstance(p, ImageUrlPart))

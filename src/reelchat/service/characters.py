"""Characters: a tenant's named reference frames, taken from a video, that prompts can call by name.

A prompt names a character by its name or `@name` (whole words, any case); the video is then conditioned
on the character's reference frame (the service passes it as the input image: image-to-video for a new
video, the opening frame of an edit's source). A model with real subject-reference support would take
several frames of the character and keep its identity through the clip; a single first frame only sets
how the clip starts.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from ..domain import MAX_CHARACTER_NAME_CHARS, Character
from ..ids import new_character_id
from ..media.storage import Storage, new_media_name
from ..store.tasks import Store
from .errors import InvalidRequest, NotFound
from .video_inputs import VideoInputs

__all__ = ["MAX_NAME_CHARS", "CharacterService"]

MAX_NAME_CHARS = MAX_CHARACTER_NAME_CHARS  # after whitespace is collapsed; the request holds at most as many
_SEARCHED = 200  # a prompt is matched against the tenant's most recent characters, at most this many
# Every new video asks which characters its prompt names. The tenant's list is kept this long, so a
# burst of requests reads it once, not once each; a character made here is seen at once, one made
# through another replica within this time.
FRESH_S = 1.0
_CACHED_TENANTS = 10_000


class CharacterService:
    def __init__(self, store: Store, storage: Storage, uploads: VideoInputs) -> None:
        self.store = store
        self.storage = storage
        self.uploads = uploads
        self._known: dict[str, tuple[float, list[Character]]] = {}  # tenant -> (read at, newest first)
        self._reads: dict[str, asyncio.Task[list[Character]]] = {}
        self._created = 0  # characters made here: a read that began before one is not kept

    async def create(
        self,
        tenant: str,
        name: str,
        *,
        upload: bytes | None = None,
        video_id: str | None = None,
        load_video: Callable[[str, str], Awaitable[bytes]],
    ) -> Character:
        """A character named `name` from an uploaded video, or from the tenant's completed video `video_id`
        (`load_video(tenant, video_id)` gives its mp4, NotFound when it isn't theirs)."""
        name = _check_name(name)
        if upload is None and video_id is None:
            raise InvalidRequest('A video is required: upload a file or give {"id": ...}.', param="video")
        data = upload if upload is not None else await load_video(tenant, video_id or "")
        checked = await self.uploads.check(data)
        png = await asyncio.to_thread(_png, checked.middle)
        character = Character(
            id=new_character_id(),
            tenant=tenant,
            name=name,
            frame_name=new_media_name("png"),
            created_at=datetime.now(UTC),
            source_video_id=video_id if upload is None else None,
        )
        await self.storage.save(character.frame_name, png)
        try:
            await self.store.characters.add(character)
        except BaseException:
            await self.storage.delete(character.frame_name)
            raise
        self._known.pop(tenant, None)
        self._reads.pop(tenant, None)  # a read begun before it must not answer the next request
        self._created += 1
        return character

    async def get(self, tenant: str, character_id: str) -> Character:
        found = await self.store.characters.get(tenant, character_id)
        if found is None:
            raise NotFound(
                f"No character found with id '{character_id}'.", param="character_id", code="character_not_found"
            )
        return found

    async def named_in(self, tenant: str, prompt: str) -> Character | None:
        """The character the prompt names: an `@name` first, else a plain name; the longest name wins."""
        candidates = await self._of_tenant(tenant)
        for at in (True, False):
            named = [c for c in candidates if _mentions(prompt, c.name, at=at)]
            if named:
                return max(named, key=lambda c: len(c.name))
        return None

    async def _of_tenant(self, tenant: str) -> list[Character]:
        known = self._known.get(tenant)
        if known is not None and time.monotonic() - known[0] <= FRESH_S:
            return known[1]
        # one read at a time per tenant: a burst that finds the list lapsed shares one query, and once
        # the list is known, the request that finds it lapsed goes on with it while it is read again
        read = self._reads.get(tenant)
        if read is None:
            read = asyncio.get_running_loop().create_task(self._read(tenant), name="reelchat-characters")
            read.add_done_callback(_retrieved)
            self._reads[tenant] = read
        if known is not None:
            return known[1]
        return await asyncio.shield(read)

    async def _read(self, tenant: str) -> list[Character]:
        try:
            read_at, created = time.monotonic(), self._created
            found = await self.store.characters.of_tenant(tenant, _SEARCHED)
            if created == self._created:
                if len(self._known) >= _CACHED_TENANTS:
                    self._known.clear()
                self._known[tenant] = (read_at, found)
            return found
        finally:
            if self._reads.get(tenant) is asyncio.current_task():
                del self._reads[tenant]

    async def reference_frame(self, character: Character) -> bytes:
        return await self.storage.load(character.frame_name)


def _check_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise InvalidRequest("A character needs a name.", param="name", code="missing_name")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequest(f"A character's name is at most {MAX_NAME_CHARS} characters.", param="name")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("The name contains an invalid character.", param="name", code="invalid_value") from None
    return name


def _mentions(prompt: str, name: str, *, at: bool) -> bool:
    """Whether `prompt` holds `name` as whole words (after an `@` when `at`), in any case.

    `str.find` from match to match: linear in the prompt, whatever the name holds (no regular expression).
    """
    text, needle = prompt.lower(), ("@" if at else "") + name.lower()
    start = text.find(needle)
    while start >= 0:
        end = start + len(needle)
        before_ok = at or start == 0 or not (text[start - 1].isalnum() or text[start - 1] in "_@")
        after_ok = end == len(text) or not (text[end].isalnum() or text[end] == "_")
        if before_ok and after_ok:
            return True
        start = text.find(needle, start + 1)
    return False


def _png(frame: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(out, format="PNG")
    return out.getvalue()


def _retrieved(task: asyncio.Task[list[Character]]) -> None:
    if not task.cancelled():
        task.exception()  # a refresh nobody waited for may fail: the next request retries

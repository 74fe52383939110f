"""`reelchat generate "prompt"`: make a video on a running server, with a live progress bar, and save the mp4."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from .progress import err, task_bar
from .server_client import ClientError, Server


def generate(
    server: Server,
    prompt: str,
    *,
    model: str | None,
    image: str | None,
    remix: str | None,
    seconds: int | None,
    size: str | None,
    out: Path | None,
) -> int:
    try:
        task_id, video_id = _submit(server, prompt, model=model, image=image, remix=remix, seconds=seconds, size=size)
        err.print(f"[dim]task {task_id} · follow it at {server.base_url}/web/{task_id}[/dim]")
        with task_bar(video_id) as update:
            view = server.follow(task_id, update)
        if view["status"] != "completed":
            video = server.json("GET", f"/v1/videos/{view['video_id']}")
            error = video.get("error") or {}
            err.print(f"[red]reelchat: the video failed: {error.get('message') or view['status']}[/red]")
            return 1
        target = out or Path(f"{view['video_id']}.mp4")
        data = server.request("GET", f"/v1/videos/{view['video_id']}/content", params={"variant": "video"}).content
        target.write_bytes(data)
    except ClientError as e:
        err.print(f"[red]reelchat: {e}[/red]")
        return 1
    except OSError as e:
        err.print(f"[red]reelchat: could not write the video: {e}[/red]")
        return 1
    print(f"{view['video_id']} saved to {target} ({len(data)} bytes)")
    print(f'remix it: reelchat generate "..." --remix {view["video_id"]}   (sid {view["sid"]})')
    return 0


def _submit(
    server: Server,
    prompt: str,
    *,
    model: str | None,
    image: str | None,
    remix: str | None,
    seconds: int | None,
    size: str | None,
) -> tuple[str, str]:
    """Start the video; returns (task id, video id)."""
    if remix:
        if image or seconds or size:
            raise ClientError("--remix keeps its source's image, length and size: drop --image, --seconds and --size")
        if remix.startswith("s_"):
            task_id = server.chat_remix(remix, prompt, model)
            return task_id, server.video_id_of(task_id)
        video = server.json("POST", f"/v1/videos/{server.video_id_of(remix)}/remix", json={"prompt": prompt})
        return str(video["task_id"]), str(video["id"])
    fields: dict[str, Any] = {"prompt": prompt}
    if model:
        fields["model"] = model
    if seconds is not None:
        fields["seconds"] = str(seconds)
    if size:
        fields["size"] = size
    if image and image.startswith(("http://", "https://")):
        fields["input_reference"] = {"image_url": image}
        video = server.json("POST", "/v1/videos", json=fields)
    elif image:
        path = Path(image)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ClientError(f"could not read the image {image}: {e.strerror}") from None
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        video = server.json("POST", "/v1/videos", data=fields, files={"input_reference": (path.name, data, kind)})
    else:
        video = server.json("POST", "/v1/videos", json=fields)
    return str(video["task_id"]), str(video["id"])

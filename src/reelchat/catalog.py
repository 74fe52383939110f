"""The model catalog: public model names (`sora-2`, ...) mapped to an engine and its defaults.

Built-in entries serve the demo model. A JSON/TOML file (REELCHAT_MODELS_FILE) and a JSON string
(REELCHAT_MODELS_JSON) add entries or override fields of existing ones, merged in that order.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .domain import Orientation

DEMO_PIPELINE = "demo"
DEMO_I2V_PIPELINE = "demo-i2v"


class CatalogError(ValueError):
    pass


class UpstreamSpec(BaseModel):
    """An upstream OpenAI-Videos-API server that makes the video for this entry."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    model: str
    api_key_env: str | None = None
    api_key_file: Path | None = None
    supports_remix: bool = True
    supports_reference: bool = True
    deadline_s: float = 1800.0
    request_timeout_s: float = 30.0
    max_retries: int = 4
    # poll cadence when the upstream sends no `openai-poll-after-ms`, and the first retry's backoff (doubling)
    poll_interval_s: float = Field(default=2.0, gt=0)
    retry_backoff_s: float = Field(default=1.0, gt=0)
    # downloads are streamed and cut off past these: a finished video fails its task, a thumbnail is dropped
    max_video_bytes: int = Field(default=2 * 1024**3, gt=0)
    max_thumbnail_bytes: int = Field(default=20 * 1024**2, gt=0)
    # sent as OpenAI-Organization / OpenAI-Project only when set here (never taken from OPENAI_* variables)
    organization: str | None = None
    project: str | None = None

    def api_key(self) -> str:
        import os

        if self.api_key_file is not None:
            return self.api_key_file.read_text().strip()
        if self.api_key_env:
            return os.environ.get(self.api_key_env, "")
        return "none"


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    engine: Literal["diffusers", "upstream"] = "diffusers"
    pipeline: str = DEMO_PIPELINE  # a pipeline directory, or "demo"
    i2v_pipeline: str | None = DEMO_I2V_PIPELINE  # image-to-video pipeline directory, "demo-i2v", or None
    upstream: UpstreamSpec | None = None
    seconds: list[int] = Field(min_length=1)
    default_seconds: int
    portrait_sizes: list[str] = Field(min_length=1)  # "WxH", first is the default
    landscape_sizes: list[str] = Field(min_length=1)
    fps: int = Field(gt=0)
    steps: int = Field(gt=0)
    guidance_scale: float = 5.0
    negative_prompt: str | None = None
    remix_strength: float = Field(default=0.6, gt=0, le=1)
    # how a remix's prompt is built: {source_prompt} is the source video's full prompt, {prompt} the new turn
    remix_prompt_template: str = "{source_prompt}. {prompt}"

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.default_seconds not in self.seconds:
            raise ValueError(f"{self.name}: default_seconds {self.default_seconds} not in seconds {self.seconds}")
        for s in self.portrait_sizes + self.landscape_sizes:
            parse_size(s)
        if self.engine == "upstream" and self.upstream is None:
            raise ValueError(f"{self.name}: engine 'upstream' needs an 'upstream' section")
        if "{prompt}" not in self.remix_prompt_template:
            raise ValueError(f"{self.name}: remix_prompt_template must contain {{prompt}}")
        return self

    @property
    def all_sizes(self) -> list[str]:
        return list(dict.fromkeys(self.portrait_sizes + self.landscape_sizes))

    def default_size(self, orientation: Orientation) -> str:
        return (self.landscape_sizes if orientation is Orientation.LANDSCAPE else self.portrait_sizes)[0]

    def frames_for(self, seconds: int) -> int:
        """Wan wants 4k+1 frames: the nearest such count to seconds*fps."""
        return 4 * max(1, round(seconds * self.fps / 4)) + 1

    def remix_prompt(self, source_prompt: str, prompt: str) -> str:
        template = self.remix_prompt_template
        source_prompt = source_prompt.rstrip()
        if source_prompt.endswith((".", "!", "?", "。", "！", "？")):
            template = template.replace("{source_prompt}.", "{source_prompt}")  # no "dancing.. now"
        return template.replace("{source_prompt}", source_prompt).replace("{prompt}", prompt)


def parse_size(size: str) -> tuple[int, int]:
    try:
        w, h = size.lower().split("x")
        width, height = int(w), int(h)
    except ValueError:
        raise CatalogError(f"size {size!r} is not WxH") from None
    if width <= 0 or height <= 0:
        raise CatalogError(f"size {size!r} is not WxH")
    return width, height


def orientation_of(size: str) -> Orientation:
    w, h = parse_size(size)
    return Orientation.LANDSCAPE if w > h else Orientation.PORTRAIT


BUILTIN: dict[str, dict[str, Any]] = {
    "sora-2": {
        "description": "Standard: 10 s, standard definition",
        "seconds": [10],
        "default_seconds": 10,
        "portrait_sizes": ["96x160"],
        "landscape_sizes": ["160x96"],
        "fps": 4,
        "steps": 4,
        # tuned for the demo model; set your checkpoint's own strength with its pipeline
        "remix_strength": 0.3,
    },
    "sora-2-pro": {
        "description": "Pro: 15 s, high definition",
        "seconds": [15],
        "default_seconds": 15,
        "portrait_sizes": ["144x256"],
        "landscape_sizes": ["256x144"],
        "fps": 4,
        "steps": 6,
        # tuned for the demo model; set your checkpoint's own strength with its pipeline
        "remix_strength": 0.3,
    },
}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as e:
        raise CatalogError(f"cannot read models file {path}: {e}") from e
    if isinstance(data, dict) and isinstance(data.get("models"), dict):
        data = data["models"]
    if not isinstance(data, dict):
        raise CatalogError(f"models file {path} must hold an object of model name -> fields")
    return data


def load_catalog(models_file: Path | None = None, models_json: str | None = None) -> dict[str, ModelSpec]:
    merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in BUILTIN.items()}
    layers: list[dict[str, Any]] = []
    if models_file is not None:
        layers.append(_read_file(models_file))
    if models_json:
        try:
            layer = json.loads(models_json)
        except ValueError as e:
            raise CatalogError(f"REELCHAT_MODELS_JSON is not JSON: {e}") from e
        if not isinstance(layer, dict):
            raise CatalogError("REELCHAT_MODELS_JSON must be an object of model name -> fields")
        layers.append(layer)
    for layer in layers:
        for name, fields in layer.items():
            if fields is None:  # `"name": null` removes an entry
                merged.pop(name, None)
                continue
            if not isinstance(fields, dict):
                raise CatalogError(f"model {name!r}: expected an object of fields")
            merged.setdefault(name, {}).update(fields)
    try:
        return {name: ModelSpec(name=name, **fields) for name, fields in merged.items()}
    except ValueError as e:
        raise CatalogError(f"invalid model catalog: {e}") from e

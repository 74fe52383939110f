"""The model catalog: public model names (`sora-2`, ...) mapped to an engine kind and its settings.

`ModelSpec` is one entry: a `DiffusersSpec` or an `UpstreamSpec`, told apart by its `engine` field
(diffusers when absent). Each lives beside its engine (`engines/*_spec.py`); the fields they share
are `engines.spec.SpecBase`.

Built-in entries serve the demo model. A JSON/TOML file (REELCHAT_MODELS_FILE) and a JSON string
(REELCHAT_MODELS_JSON) add entries or override fields of existing ones, merged in that order. An entry
with `"preset": "<name>"` (engines/presets.py) starts over from that preset's fields, then its own.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from .engines.diffusers_spec import DEMO_I2V_PIPELINE, DEMO_LTX_PIPELINE, DEMO_PIPELINE, DiffusersSpec
from .engines.presets import PRESETS
from .engines.spec import Capabilities, CatalogError, orientation_of, parse_size
from .engines.upstream_spec import UpstreamServer, UpstreamSpec

__all__ = [
    "BUILTIN",
    "DEMO_I2V_PIPELINE",
    "DEMO_LTX_PIPELINE",
    "DEMO_PIPELINE",
    "Capabilities",
    "CatalogError",
    "DiffusersSpec",
    "ModelSpec",
    "UpstreamServer",
    "UpstreamSpec",
    "load_catalog",
    "orientation_of",
    "parse_size",
]

ModelSpec = Annotated[DiffusersSpec | UpstreamSpec, Field(discriminator="engine")]
# The loader picks the kind itself, so errors read "... for UpstreamSpec: seconds: Field required" rather
# than the tagged union's "upstream.seconds" (which reads like the `upstream` section).
_KINDS: dict[str, type[DiffusersSpec] | type[UpstreamSpec]] = {"diffusers": DiffusersSpec, "upstream": UpstreamSpec}


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


def _validate(name: str, fields: dict[str, Any]) -> DiffusersSpec | UpstreamSpec:
    """The entry as its engine kind's spec, without the fields only another kind has.

    An entry switched to another engine keeps what it inherited (a built-in's `remix_strength`, say),
    and catalogs have always been allowed to carry such fields: they mean nothing to this kind. A field
    no kind knows is still an error.
    """
    engine = fields.get("engine", "diffusers")
    kind = _KINDS.get(engine) if isinstance(engine, str) else None
    if kind is None:
        raise CatalogError(f"invalid model catalog: {name}: engine must be one of {', '.join(_KINDS)}, not {engine!r}")
    others = {f for k in _KINDS.values() if k is not kind for f in k.model_fields} - set(kind.model_fields)
    return kind.model_validate({**{k: v for k, v in fields.items() if k not in others}, "name": name})


def _preset_fields(name: str, preset: object) -> dict[str, Any]:
    if not isinstance(preset, str) or preset not in PRESETS:
        known = ", ".join(PRESETS)
        raise CatalogError(f"model {name!r}: unknown preset {preset!r} (known: {known}; see `reelchat models presets`)")
    p = PRESETS[preset]
    return {"description": p.description, **p.fields}


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
            if "preset" in fields:  # start over from the preset: none of the entry's older fields apply
                merged[name] = {**_preset_fields(name, fields["preset"]), **fields}
            else:
                merged.setdefault(name, {}).update(fields)
    try:
        return {name: _validate(name, fields) for name, fields in merged.items()}
    except ValueError as e:
        raise CatalogError(f"invalid model catalog: {e}") from e

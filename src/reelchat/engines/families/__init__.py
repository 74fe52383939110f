"""Model families by the `_class_name` of a checkpoint's model_index.json.

To add a family (HunyuanVideo, Kandinsky, ...): write a module with a `Family` subclass and add it to
`FAMILIES` below. The engine reads the checkpoint's model_index.json and asks `family_for`.
"""

from __future__ import annotations

import json
from pathlib import Path

from .base import Family
from .ltx import LTXFamily
from .wan import WanFamily

__all__ = ["FAMILIES", "Family", "FamilyError", "family_for", "family_named"]

FAMILIES: tuple[Family, ...] = (WanFamily(), LTXFamily())


class FamilyError(ValueError):
    """No registered family serves this checkpoint (or it is not a diffusers checkpoint at all)."""


def family_named(name: str) -> Family:
    for family in FAMILIES:
        if family.name == name:
            return family
    raise FamilyError(f"unknown model family {name!r} (known: {', '.join(f.name for f in FAMILIES)})")


def class_name_of(pipeline_dir: Path) -> str:
    index = Path(pipeline_dir) / "model_index.json"
    try:
        data = json.loads(index.read_text())
    except FileNotFoundError:
        raise FamilyError(f"no diffusers pipeline at {pipeline_dir} (model_index.json missing)") from None
    except (OSError, ValueError) as e:
        raise FamilyError(f"cannot read {index}: {e}") from e
    name = data.get("_class_name") if isinstance(data, dict) else None
    if not isinstance(name, str):
        raise FamilyError(f"{index} has no _class_name")
    return name


def family_for(pipeline_dir: Path) -> Family:
    """The family of the checkpoint at `pipeline_dir`, from its model_index.json."""
    name = class_name_of(pipeline_dir)
    for family in FAMILIES:
        if name in family.class_names:
            return family
    known = ", ".join(sorted(n for f in FAMILIES for n in f.class_names))
    raise FamilyError(f"{pipeline_dir} holds a {name}, which reelchat does not serve (it serves {known})")

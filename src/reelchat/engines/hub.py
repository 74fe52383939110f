"""Checkpoints from the Hugging Face Hub: `reelchat pull` downloads one into the local Hugging Face cache
(`HF_HOME` / `HF_HUB_CACHE`, huggingface_hub's own default), and serving reads it back from there, never
from the network.

A pull takes only what the pipeline needs: `model_index.json` and the folders of the components it
names. A diffusers repo may also hold single-file checkpoints at its root (Lightricks/LTX-Video holds a
dozen, 6-28 GB each), `.bin` copies of `.safetensors` weights, and fp16/bf16 variants; none of those are
read by `from_pretrained`, so none are fetched. Downloads resume where they stopped (huggingface_hub
keeps `.incomplete` files and asks for the rest with an HTTP Range).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from .presets import PRESETS, preset_for_repo

# owner/name as the Hub spells them; a path that exists on disk is always a directory, not a repo id
# linear whatever it is given: each part is bounded (the Hub allows 96 characters) and possessive, and a
# search may only start where a run of name characters starts (tests/test_redos.py)
_REPO_ID = re.compile(r"(?<![A-Za-z0-9._-])[A-Za-z0-9][A-Za-z0-9._-]{0,95}+/[A-Za-z0-9][A-Za-z0-9._-]{0,95}+")
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".onnx", ".gguf")
# `name.fp16.safetensors`, `name.fp16-00001-of-00002.safetensors`, `name.safetensors.index.fp16.json`
_VARIANT = re.compile(r"\.(fp16|bf16|fp32|fp8|int8)([.-])")


class HubError(Exception):
    """A pull or a cache lookup failed for a reason worth showing as is."""


def is_repo_id(value: str) -> bool:
    return _REPO_ID.fullmatch(value) is not None and not Path(value).expanduser().exists()


def pull_command(repo_id: str) -> str:
    preset = preset_for_repo(repo_id)
    return f"reelchat pull {preset.name if preset else repo_id}"


def resolve_target(name: str) -> str:
    """A preset name or a repo id, as a repo id."""
    if name in PRESETS:
        return PRESETS[name].repo_id
    if _REPO_ID.fullmatch(name):
        return name
    raise HubError(f"{name!r} is neither a preset ({', '.join(PRESETS)}) nor a Hugging Face repo id (owner/name)")


def _hub() -> Any:
    return importlib.import_module("huggingface_hub")


def components(model_index: dict[str, Any]) -> list[str]:
    """The component folders a pipeline loads: model_index entries like `"vae": ["diffusers", "..."]`."""
    return sorted(
        k
        for k, v in model_index.items()
        if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
    )


def needed_files(model_index: dict[str, Any], repo_files: Iterable[str]) -> list[str]:
    """The files of `repo_files` that `from_pretrained` reads for this pipeline."""
    by_folder: dict[str, list[str]] = {}
    for f in repo_files:
        parts = PurePosixPath(f).parts
        if len(parts) >= 2:
            by_folder.setdefault(parts[0], []).append(f)
    wanted = ["model_index.json"]
    for folder in components(model_index):
        files = by_folder.get(folder, [])
        weights = [f for f in files if _is_weight(f)]
        has_safetensors = any(f.endswith(".safetensors") for f in weights)
        has_plain = any(not _VARIANT.search(PurePosixPath(f).name) for f in weights)
        for f in files:
            name = PurePosixPath(f).name
            if has_plain and _VARIANT.search(name):
                continue  # an fp16/bf16 copy of weights that exist in full precision
            if has_safetensors and _is_weight(f) and not name.endswith((".safetensors", ".safetensors.index.json")):
                continue  # a .bin (pickle) copy of .safetensors weights
            wanted.append(f)
    return wanted


def _is_weight(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.endswith(_WEIGHTS) or (".index." in name and name.endswith(".json") and "model" in name)


def pull(repo_id: str, *, revision: str | None = None) -> Path:
    """Download what `repo_id`'s pipeline needs into the Hugging Face cache; the snapshot directory.

    Progress bars are huggingface_hub's (on stderr). Blocking; raises HubError with a readable reason.
    """
    hub = _hub()
    errors = importlib.import_module("huggingface_hub.errors")
    try:
        index_path = hub.hf_hub_download(repo_id, "model_index.json", revision=revision)
        model_index = json.loads(Path(index_path).read_text())
        _check_family(repo_id, model_index)
        files = hub.HfApi().list_repo_files(repo_id, revision=revision)
        wanted = needed_files(model_index, files)
        missing = [c for c in components(model_index) if not any(f.startswith(c + "/") for f in wanted)]
        if missing:
            raise HubError(f"{repo_id} names components with no files in the repo: {', '.join(missing)}")
        return Path(hub.snapshot_download(repo_id, revision=revision, allow_patterns=wanted))
    except errors.EntryNotFoundError:
        raise HubError(f"{repo_id} is not a diffusers pipeline (it has no model_index.json)") from None
    except errors.GatedRepoError:
        raise HubError(
            f"{repo_id} is gated: accept its terms on the Hub, then set HF_TOKEN (or run `hf auth login`)"
        ) from None
    except errors.RepositoryNotFoundError:
        raise HubError(f"no repo {repo_id} on the Hub (or it is private: set HF_TOKEN)") from None
    except errors.HfHubHTTPError as e:
        raise HubError(f"the Hub refused: {str(e).splitlines()[0]}") from None
    except (OSError, ValueError) as e:  # network down, disk full, a broken model_index.json
        raise HubError(f"could not download {repo_id}: {e}") from None


def _check_family(repo_id: str, model_index: dict[str, Any]) -> None:
    from .families import FAMILIES

    name = model_index.get("_class_name")
    if not any(name in f.class_names for f in FAMILIES):
        known = ", ".join(f.name for f in FAMILIES)
        raise HubError(f"{repo_id} is a {name}, which reelchat does not serve (families: {known})")


def cached_snapshot(repo_id: str) -> Path | None:
    """The local snapshot of `repo_id` when every component the pipeline needs is there; never online.

    Found through its model_index.json (`try_to_load_from_cache`): `snapshot_download(local_files_only=
    True)` would call the snapshot incomplete for lacking the files a pull skips on purpose.
    """
    found = _hub().try_to_load_from_cache(repo_id, "model_index.json")
    if not isinstance(found, str):  # None (never fetched) or the cache's "known missing" marker
        return None
    path = Path(found).parent
    try:
        model_index = json.loads(Path(found).read_text())
    except (OSError, ValueError):
        return None
    for folder in components(model_index):
        if not (path / folder).is_dir() or not any((path / folder).iterdir()):
            return None  # an interrupted pull: run it again, it resumes
    return path


def missing_message(model: str, repo_id: str) -> str:
    return (
        f"model {model!r} needs {repo_id}, which is not in the local Hugging Face cache. "
        f"Download it with `{pull_command(repo_id)}`."
    )

"""What a model needs on its device, estimated before loading it, and the refusal when it cannot fit.

An out-of-memory error half-way through a user's video is the worst way to learn that a GPU is too
small: the engine checks first. The estimate reads only small files: the safetensors headers (every
tensor's dtype and shape, so the weights' size as loaded, whatever dtype they were saved in) and the
configs (the activation sizes at the largest size x length the catalog entry serves).

The checkpoint's family (`families/`, from its model_index.json) says what differs between models.
Weights: floating-point tensors take the engine's dtype (Wan's VAE stays float32, as the engine loads
it). Activations, per denoiser pass: tokens x (10 x hidden + 2 x ffn) values (the block's live tensors
with a fused attention kernel, which never holds the tokens x tokens matrix), plus the per-token timestep
modulation of Wan 2.2-style models; twice that when guidance runs batched (always for LTX-Video, which
batches it itself; for Wan with `cfg_batch`). VAE decode: Wan's causal decoder holds about 24 frames'
worth of its widest full-resolution feature map (two frames of cache per convolution); LTX-Video's
decodes every frame at once, its last block at 1/patch_size of the resolution (about 4 live copies);
either over one tile with `vae_tiling`. Then 10% and 256 MiB for the allocator's slack.

These are estimates, on the generous side; `REELCHAT_DEVICE_MEMORY_GB` overrides the budget they are
checked against (the free memory of the CUDA device, or the available RAM for the CPU).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import EngineError
from .families import Family, FamilyError, family_for
from .speed_spec import Offload, SpeedConfig, Workload

GIB = 1024**3
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_FLOAT_TYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}
_INT_BYTES = {"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8}
_DENOISERS = ("transformer", "transformer_2")
_VAE_LIVE_FRAMES = 24  # Wan's causal decoder
_LTX_VAE_LIVE = 4  # LTX-Video's decoder: copies of its last block's feature map alive at once


@dataclass(frozen=True)
class MemoryEstimate:
    weights: dict[str, int]  # component -> bytes once loaded
    activations: dict[str, int]  # "transformer" / "vae" -> peak bytes at `workload`
    workload: Workload | None  # the largest shape the entry serves

    def needed(self, offload: Offload) -> int:
        """Bytes the device must have free, for the given offload mode."""
        act = max(self.activations.values(), default=0)
        if offload == "sequential":  # one layer's weights at a time
            need = act + max(self.weights.values(), default=0) // 20
        elif offload == "model":  # one component at a time
            need = max((w + self.activations.get(_kind(c), 0) for c, w in self.weights.items()), default=0)
        else:
            need = sum(self.weights.values()) + act
        return int(need * 1.1) + 256 * 1024**2


def _kind(component: str) -> str:
    return "transformer" if component in _DENOISERS else component


def safetensors_bytes(path: Path, dtype_bytes: int) -> int:
    """The size of a safetensors file's tensors once loaded with floats cast to `dtype_bytes` each."""
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header: dict[str, Any] = json.loads(f.read(n))
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        count = math.prod(int(d) for d in info["shape"])
        kind = str(info["dtype"])
        total += count * (dtype_bytes if kind in _FLOAT_TYPES else _INT_BYTES.get(kind, 4))
    return total


def _component_bytes(folder: Path, dtype_bytes: int) -> int:
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return sum(safetensors_bytes(f, dtype_bytes) for f in files)
    # no safetensors (a .bin checkpoint): its size on disk, scaled from float32
    weights = [f for f in folder.iterdir() if f.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    return sum(f.stat().st_size for f in weights) * dtype_bytes // 4


def _config(folder: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def _pair(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int) and value > 0 else default


def _transformer_activation(
    cfg: dict[str, Any], vae: dict[str, Any], w: Workload, *, batch: int, per_token_time: bool, elt: int
) -> int:
    patch = cfg.get("patch_size", 1)
    if isinstance(patch, list) and len(patch) == 3:
        pt, ph, pw = (int(p) for p in patch)
    else:
        pt, ph, pw = _pair(cfg.get("patch_size_t"), 1), _pair(patch, 1), _pair(patch, 1)
    spatial, temporal = _vae_factors(vae)
    frames = (w.frames - 1) // temporal + 1
    tokens = math.ceil(frames / pt) * math.ceil(w.height / spatial / ph) * math.ceil(w.width / spatial / pw)
    hidden = _pair(cfg.get("num_attention_heads"), 1) * _pair(cfg.get("attention_head_dim"), 64)
    hidden = _pair(cfg.get("hidden_size"), hidden)
    ffn = _pair(cfg.get("ffn_dim"), 4 * hidden)
    per_token = 10 * hidden + 2 * ffn + (6 * hidden if per_token_time else 0)
    return batch * tokens * per_token * elt


def _vae_factors(vae: dict[str, Any]) -> tuple[int, int]:
    spatial = vae.get("scale_factor_spatial") or vae.get("spatial_compression_ratio")
    temporal = vae.get("scale_factor_temporal") or vae.get("temporal_compression_ratio")
    downs = vae.get("temperal_downsample")
    if spatial is None and isinstance(downs, list):
        spatial = 2 ** len(downs)
    if temporal is None and isinstance(downs, list):
        temporal = 2 ** sum(bool(d) for d in downs)
    if spatial is None and "patch_size" in vae and "spatio_temporal_scaling" in vae:  # LTX-Video
        spatial = int(vae["patch_size"]) * 2 ** sum(bool(s) for s in vae["spatio_temporal_scaling"])
        temporal = int(vae.get("patch_size_t", 1)) * 2 ** sum(bool(s) for s in vae["spatio_temporal_scaling"])
    return _pair(spatial, 8), _pair(temporal, 4)


def _vae_activation(vae: dict[str, Any], w: Workload, *, tiling: bool, tile: int, elt: int) -> int:
    """Peak bytes of a decode at `w`, with `elt` bytes per value (the VAE's dtype)."""
    height, width = (min(w.height, tile), min(w.width, tile)) if tiling else (w.height, w.width)
    video = 2 * w.frames * w.height * w.width * 3 * 4  # the decoded clip, and its post-processed copy
    if "spatio_temporal_scaling" in vae:  # LTX-Video: all frames at once, unpatchified only at the end
        channels = vae.get("decoder_block_out_channels") or vae.get("block_out_channels") or [128]
        patch = _pair(vae.get("patch_size"), 1)
        last = math.ceil(height / patch) * math.ceil(width / patch) * int(channels[0])
        return _LTX_VAE_LIVE * w.frames * last * elt + video
    widest = vae.get("decoder_base_dim") or vae.get("base_dim")
    if widest is None:
        channels = vae.get("decoder_block_out_channels") or vae.get("block_out_channels") or [128]
        widest = int(channels[0])
    mult = vae.get("dim_mult") or [1]
    channels_full = int(widest) * int(mult[0])
    return _VAE_LIVE_FRAMES * height * width * channels_full * elt + video


def _family(pipeline_dir: Path) -> Family:
    try:
        return family_for(pipeline_dir)
    except FamilyError as e:
        raise EngineError(str(e), "engine_unavailable") from e


def estimate(pipeline_dir: Path, *, dtype: str, speed: SpeedConfig, workloads: set[Workload]) -> MemoryEstimate:
    """What the pipeline at `pipeline_dir` needs on its device, from its files' headers and configs."""
    try:
        index: dict[str, Any] = json.loads((pipeline_dir / "model_index.json").read_text())
    except (OSError, ValueError) as e:
        raise EngineError(f"cannot read {pipeline_dir / 'model_index.json'}: {e}", "engine_unavailable") from e
    family = _family(pipeline_dir)
    elt = _DTYPE_BYTES[dtype]
    vae_elt = 4 if family.vae_float32 else elt
    weights: dict[str, int] = {}
    for name, entry in index.items():
        folder = pipeline_dir / name
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None or not folder.is_dir():
            continue
        size = _component_bytes(folder, vae_elt if name == "vae" else elt)
        if size:
            weights[name] = size
    largest = max(workloads, key=lambda w: (w.pixels, w.guidance), default=None)
    activations: dict[str, int] = {}
    if largest is not None:
        vae = _config(pipeline_dir / "vae")
        # Wan's pipelines run guidance as two passes unless reelchat batches them; LTX batches it itself
        batch = 2 if largest.guidance and (speed.cfg_batch or not family.two_pass_guidance) else 1
        activations["transformer"] = max(
            (
                _transformer_activation(
                    _config(pipeline_dir / d),
                    vae,
                    largest,
                    batch=batch,
                    per_token_time=bool(index.get("expand_timesteps")),
                    elt=elt,
                )
                for d in _DENOISERS
                if d in weights
            ),
            default=0,
        )
        activations["vae"] = _vae_activation(vae, largest, tiling=speed.vae_tiling, tile=family.vae_tile, elt=vae_elt)
    return MemoryEstimate(weights=weights, activations=activations, workload=largest)


def budget(device: str, override_gb: float | None) -> int:
    """Bytes this engine may use on `device`: the override, else free CUDA memory or available RAM."""
    if override_gb is not None:
        return int(override_gb * GIB)
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def check_fits(est: MemoryEstimate, available: int, *, device: str, offload: Offload, what: str) -> None:
    """Refuse, with what to change, when `est` cannot fit in `available` bytes with this offload mode."""
    need = est.needed(offload)
    if need <= available:
        return
    parts = ", ".join(f"{c} {_gib(b)}" for c, b in sorted(est.weights.items(), key=lambda kv: -kv[1]))
    w = est.workload
    at = f" at {w.width}x{w.height}x{w.frames}" if w is not None else ""
    acts = ", ".join(f"{k} {_gib(v)}" for k, v in est.activations.items())
    lines = [
        f"{what} needs about {_gib(need)} on {device} but only {_gib(available)} is available "
        f"(weights: {parts}; activations{at}: {acts}; offload: {offload}).",
    ]
    fixes = []
    order: list[Offload] = ["model", "sequential"]
    for mode in order[order.index(offload) + 1 :] if offload in order else order:
        if est.needed(mode) <= available:
            fixes.append(
                f'set "speed": {{"offload": "{mode}"}} in its catalog entry (needs about {_gib(est.needed(mode))})'
            )
            break
    if w is not None:
        fixes.append("serve smaller sizes or fewer seconds")
    fixes.append("use a smaller model or a device with more memory")
    fixes.append("or set REELCHAT_DEVICE_MEMORY_GB if the detected budget is wrong")
    raise EngineError(" ".join([*lines, "To fix: " + "; ".join(fixes) + "."]), "engine_unavailable")

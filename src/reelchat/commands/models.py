"""`reelchat models presets` and `reelchat pull`: the known checkpoints, and getting one into the cache."""

from __future__ import annotations

import sys

from ..catalog import DiffusersSpec, ModelSpec
from ..engines.presets import PRESETS


def print_presets() -> int:
    header = ("preset", "repo", "family", "params", "sizes", "fps", "window", "steps", "VRAM", "supports")
    rows = [header]
    for p in PRESETS.values():
        f = p.fields
        sizes = "/".join(dict.fromkeys(f["landscape_sizes"] + f["portrait_sizes"]))
        window = f"{p.window_frames} fr"
        vram = f"~{p.vram_gb} GB"
        supports = ",".join(p.supports)
        rows.append(
            (p.name, p.repo_id, p.family, p.params, sizes, str(f["fps"]), window, str(f["steps"]), vram, supports)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print()
    print("VRAM: estimated for bf16 weights plus activations at the first size, without offload; not measured.")
    print("supports: what the model can do (reelchat serves text, image and video (remix); not extension yet).")
    print('Use one: `reelchat pull NAME`, then a catalog entry {"sora-2": {"preset": "NAME"}} (any field overrides).')
    return 0


def pull(target: str) -> int:
    from ..engines import hub

    try:
        repo_id = hub.resolve_target(target)
    except hub.HubError as e:
        print(f"reelchat: {e}", file=sys.stderr)
        return 2
    print(f"reelchat: pulling {repo_id} (only the files its diffusers pipeline loads)", flush=True)
    try:
        path = hub.pull(repo_id)
    except hub.HubError as e:
        print(f"reelchat: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nreelchat: interrupted; run `reelchat pull {target}` again to resume", file=sys.stderr)
        return 130
    preset = target if target in PRESETS else None
    entry = f'{{"preset": "{preset}"}}' if preset else f'{{"pipeline": "{repo_id}"}}'
    print(f"reelchat: {repo_id} is in {path}")
    print(f"reelchat: serve it with a catalog entry, e.g. REELCHAT_MODELS_JSON='{{\"sora-2\": {entry}}}'")
    return 0


def missing_models(catalog: dict[str, ModelSpec]) -> list[str]:
    """Why each local model whose checkpoint is a Hugging Face repo id not in the cache can't be served."""
    specs = [s for s in catalog.values() if isinstance(s, DiffusersSpec)]
    repos = {(s.name, v) for s in specs for v in (s.pipeline, s.i2v_pipeline) if v}
    if not repos:
        return []
    from ..engines import hub

    return [
        hub.missing_message(name, v) for name, v in sorted(repos) if hub.is_repo_id(v) and not hub.cached_snapshot(v)
    ]


# Connections the kernel may hold before they are accepted: a burst of thousands of streams opening
# at once would otherwise overflow uvicorn's 2048 and wait out SYN retransmits (1 s, then 3 s).

"""Classifier-free guidance as one batched transformer pass, for pipelines that run it as two.

diffusers' Wan pipelines (text-, image- and video-to-video) call the transformer twice per step: once
with the prompt ("cond"), then with the negative prompt ("uncond"), on the same latents and timestep.
Batching both into one call with batch size 2 halves the kernel launches and weight reads per step,
which is most of the cost at small sizes and a few per cent at large ones (then the GPU is busy anyway).

This hook sits on the transformer (diffusers' `HookRegistry`, so the cache hooks inside it compose).
On the cond call it runs prompt and negative prompt together and keeps the unconditional half; the
uncond call that follows on the same latents gets that half back without touching the model. It only
engages while `negative` is set (by `speed.SpeedPlan.run`, from the embeddings the engine passes the
pipeline), so a pipeline without guidance, or one that batches guidance itself (LTX), is untouched.
"""

from __future__ import annotations

import importlib
from typing import Any

HOOK_NAME = "reelchat_batched_cfg"


def _model_hook_base() -> type:
    hooks: Any = importlib.import_module("diffusers.hooks.hooks")
    base: type = hooks.ModelHook
    return base


class BatchedGuidance:
    """State shared with the hook: the negative prompt of the run in progress, and what the pending
    uncond call should get. `forward_calls` counts real transformer passes (tests and the benchmark)."""

    def __init__(self) -> None:
        self.negative: Any = None  # torch.Tensor while a guided run is in progress
        self.pending: tuple[Any, Any] | None = None  # (latents the cond call saw, uncond prediction)
        self.batched_calls = 0

    def clear(self) -> None:
        self.negative = None
        self.pending = None


def install(transformer: Any) -> BatchedGuidance:
    """Register the hook on `transformer`; returns the state that arms it."""
    import torch

    state = BatchedGuidance()
    base = _model_hook_base()

    # diffusers is untyped: its ModelHook is a base class mypy cannot see
    class _Hook(base):  # type: ignore[misc, valid-type]
        def new_forward(self, module: Any, *args: Any, **kwargs: Any) -> Any:
            original = self.fn_ref.original_forward
            latents = kwargs.get("hidden_states")
            text = kwargs.get("encoder_hidden_states")
            negative = state.negative
            if args or negative is None or latents is None or text is None or kwargs.get("return_dict", True):
                return original(*args, **kwargs)
            pending = state.pending
            if pending is not None and pending[0] is latents:  # the uncond call of the pair: already done
                state.pending = None
                return (pending[1],)
            negative = negative.to(device=text.device, dtype=text.dtype)
            if negative.shape != text.shape:  # a prompt padded differently: no batching for this call
                return original(*args, **kwargs)
            batched = dict(kwargs)
            batched["hidden_states"] = torch.cat([latents, latents])
            batched["encoder_hidden_states"] = torch.cat([text, negative])
            timestep = kwargs.get("timestep")
            if isinstance(timestep, torch.Tensor) and timestep.ndim > 0:
                batched["timestep"] = torch.cat([timestep, timestep])
            image = kwargs.get("encoder_hidden_states_image")
            if isinstance(image, torch.Tensor):
                batched["encoder_hidden_states_image"] = torch.cat([image, image])
            out = original(**batched)[0]
            cond, uncond = out.chunk(2)
            state.pending = (latents, uncond)
            state.batched_calls += 1
            return (cond,)

    registry = importlib.import_module("diffusers.hooks").HookRegistry.check_if_exists_or_initialize(transformer)
    registry.register_hook(_Hook(), HOOK_NAME)
    return state

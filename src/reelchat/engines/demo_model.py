"""Tiny pipelines, built locally (no downloads) and saved like real checkpoints: Wan (`demo`,
`demo-i2v`) and LTX-Video (`demo-ltx`, see `families/ltx_demo.py`; the rest of this docstring is Wan's).

It exercises exactly the code path of a real Wan checkpoint (`from_pretrained` on a directory with
`model_index.json`) while running in seconds on a CPU. The text encoder and transformer are random
(with a few weights scaled so the prompt shows); the VAE is wired by hand as a block-average codec.
The frames are abstract mosaics, but they depend on the prompt, the seed, the source video (remix)
and the input image (image-to-video) the way a real model's do.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

DemoKind = Literal["t2v", "i2v", "ltx"]

_SEED = 20240229  # fixed: the demo weights are the same on every machine and every build
# Bump when the demo's weights or layout change: builds stamped with an older recipe are replaced.
_RECIPE = 2
_STAMP = "reelchat-demo.json"

# Tokenizer: T5-style special ids (pad=0, eos=1, unk=2), then the 256 byte-level symbols. Every prompt,
# in any script, maps to distinct ids, so the prompt really conditions the model.
_SPECIALS = ["<pad>", "</s>", "<unk>"]


def ensure_demo_pipeline(root: Path, kind: DemoKind = "t2v") -> Path:
    """Return `root/<kind>`, building and saving the demo pipeline there first if it is missing.

    The build goes into a temporary directory beside the target and is renamed into place, so a crash
    or a concurrent builder never leaves a half-written pipeline behind. Blocking (about a second).
    """
    if kind not in ("t2v", "i2v", "ltx"):
        raise ValueError(f"unknown demo pipeline kind {kind!r}")
    target = Path(root) / kind
    if _is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-build-", dir=target.parent))
    old = target.parent / f".{kind}-old-{os.getpid()}"
    try:
        _build(kind).save_pretrained(tmp, safe_serialization=True)
        (tmp / _STAMP).write_text(_stamp())
        tmp.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
        try:
            os.replace(tmp, target)  # atomic; fails when the target exists and is not empty
        except OSError:
            if _is_current(target):  # another builder won the race
                return target
            os.replace(target, old)  # an outdated or broken build: move it aside, then ours in
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def needs_build(root: Path, kind: DemoKind = "t2v") -> bool:
    """Whether `ensure_demo_pipeline(root, kind)` will build (first start, or an outdated build)."""
    return not _is_current(Path(root) / kind)


def _stamp() -> str:
    # transformers' major version too: v5 saves tokenizers under a class name v4 cannot load
    major = importlib.import_module("transformers").__version__.split(".")[0]
    return json.dumps({"recipe": _RECIPE, "transformers": major})


def _is_current(target: Path) -> bool:
    try:
        return (target / "model_index.json").is_file() and (target / _STAMP).read_text() == _stamp()
    except OSError:
        return False


def _build_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    transformers: Any = importlib.import_module("transformers")

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(_SPECIALS + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))  # noqa: S106  (a tokenizer token)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    # like T5: append </s> to every sequence
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",  # noqa: S106  (a tokenizer token)
        eos_token="</s>",  # noqa: S106  (a tokenizer token)
        unk_token="<unk>",  # noqa: S106  (a tokenizer token)
        model_max_length=512,
    )


# The demo VAE is not random: a random decoder ignores its latents (every video would look alike) and
# a random encoder/decoder pair does not round-trip (a remix would not resemble its source). Its
# weights are set so that it is a block-average codec: a latent frame holds the mean colour of each
# 8x8-pixel, 4-frame block (mixed into 16 channels), and decoding paints those colours back.
_CARRIER = 1000.0  # a constant channel that keeps every RMS norm on the main path (nearly) linear
_SILU_IN = 1e-3  # colour amplitude entering the head SiLUs, where silu(v) ~ v / 2 (error < 0.05%)
_LATENT_STD = 0.25  # decoded colour = 0.25 * latent: the demo's latents (std ~1.6) rarely clip


def _codec_vae(d: Any, torch: Any) -> Any:
    """A tiny AutoencoderKLWan hand-wired as a block-average codec (see above).

    Channels 0-2 carry RGB in [-1, 1], channel 3 the constant carrier; every residual branch and
    attention is zeroed, so the blocks reduce to their shortcuts (identity).
    """
    vae = d.AutoencoderKLWan(
        base_dim=4,  # encoder: RGB + carrier
        decoder_base_dim=8,  # the decoder's upsamplers halve the channels: 8 -> 4 = RGB + carrier
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=0,  # residual blocks would be identities anyway: skip what can be skipped
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 16,
        latents_std=[_LATENT_STD] * 16,
    )
    mix = torch.linalg.qr(torch.randn(16, 3))[0]  # RGB -> 16 latent channels, orthonormal columns
    rgb = range(3)

    def carry(conv: Any, *, offset: int = 0, taps: Any = None) -> None:
        """Copy RGB through `conv` (current frame, centre pixel, or the given 2-D taps); carrier via bias."""
        w = conv.weight
        for c in rgb:
            if taps is not None:
                w[offset + c, c][taps] = 1.0 / w[offset + c, c][taps].numel()
            elif w.dim() == 5:  # causal conv3d: the last time tap is the current frame
                w[offset + c, c, -1, w.shape[3] // 2, w.shape[4] // 2] = 1.0
            else:
                w[offset + c, c, w.shape[2] // 2, w.shape[3] // 2] = 1.0
        conv.bias[offset + 3] = _CARRIER

    def head(norm: Any, conv: Any, out: Any) -> None:
        """RMS norm -> SiLU -> conv: with the carrier dominating the norm, this is linear in RGB."""
        norm.gamma[:3] = _SILU_IN * _CARRIER / norm.gamma.shape[0] ** 0.5  # RGB enters SiLU at _SILU_IN
        for c in rgb:
            conv.weight[: out.shape[0], c, -1, 1, 1] = out[:, c] * 2.0 / _SILU_IN  # undo silu(v) ~ v/2

    enc, dec = vae.encoder, vae.decoder
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()
        carry(enc.conv_in)
        for layer in enc.down_blocks:
            if getattr(layer, "mode", "").startswith("downsample"):
                carry(layer.resample[1], taps=(slice(0, 2), slice(0, 2)))  # 2x2 mean (no padding reached)
                if hasattr(layer, "time_conv"):  # mean of the two newest frames (taps: older .. newer)
                    carry(layer.time_conv, taps=(slice(1, 3), 0, 0))
        head(enc.norm_out, enc.conv_out, mix)  # mean = mix @ rgb; log-variance stays 0 (unused: argmax)
        vae.quant_conv.weight[:, :, 0, 0, 0] = torch.eye(32)
        vae.post_quant_conv.weight[:, :, 0, 0, 0] = torch.eye(16)
        for c in rgb:
            dec.conv_in.weight[c, :, -1, 1, 1] = mix[:, c]  # back to RGB (mix^T mix = I)
        dec.conv_in.bias[3] = _CARRIER
        for block in dec.up_blocks:
            for resnet in block.resnets:
                if resnet.in_dim != resnet.out_dim:
                    carry(resnet.conv_shortcut)
            for up in block.upsamplers or []:
                carry(up.resample[1])  # nearest-neighbour upsampling
                if hasattr(up, "time_conv"):  # one frame in, two copies out
                    carry(up.time_conv)
                    carry(up.time_conv, offset=up.time_conv.weight.shape[0] // 2)
        head(dec.norm_out, dec.conv_out, torch.eye(3))
    return vae


def _build(kind: DemoKind) -> Any:
    import torch

    # untyped libraries: keep them `Any` at the boundary
    d: Any = importlib.import_module("diffusers")
    t: Any = importlib.import_module("transformers")

    with torch.random.fork_rng(devices=[]):  # seed for determinism without touching the caller's RNG
        return _build_seeded(kind, d, t, torch)


def _build_seeded(kind: DemoKind, d: Any, t: Any, torch: Any) -> Any:
    if kind == "ltx":
        from .families.ltx_demo import build_ltx_demo

        return build_ltx_demo(d, t, torch, _build_tokenizer(), _SEED)
    # Sizes follow diffusers' own Wan pipeline tests (tests/pipelines/wan/test_wan.py).
    torch.manual_seed(_SEED)
    tokenizer = _build_tokenizer()
    text_dim = 32
    text_encoder = t.UMT5EncoderModel(
        t.UMT5Config(
            vocab_size=len(tokenizer),
            d_model=text_dim,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    torch.manual_seed(_SEED + 1)
    vae = _codec_vae(d, torch)
    torch.manual_seed(_SEED + 2)
    transformer = d.WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,  # = vae z_dim: t2v, v2v and Wan-2.2-style i2v all feed plain latents
        out_channels=16,
        text_dim=text_dim,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,  # as the real model: any demo size/length fits
    )
    # Left random, the seed (the initial noise) would decide almost everything and the prompt barely
    # show: random cross-attention is nearly uniform over 512 text slots, mostly padding. Sharper
    # cross-attention keys, a much stronger cross-attention output and a weaker latent input make the
    # prompt matter about as much as the seed, as in a trained model (different prompts: different videos).
    with torch.no_grad():
        for block in transformer.blocks:
            block.attn2.norm_k.weight.mul_(16.0)
            block.attn2.to_out[0].weight.mul_(64.0)
        transformer.patch_embedding.weight.mul_(0.5)
    # shift 1: a remix at strength s re-noises its source to noise level s (a shift > 1 would push it
    # much higher, and the random denoiser would then keep little of the source)
    scheduler = d.FlowMatchEulerDiscreteScheduler(shift=1.0)
    parts: dict[str, Any] = dict(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )
    for module in (text_encoder, vae, transformer):
        module.eval()
    # Wan 2.2 TI2V-5B style (expand_timesteps=True): one set of weights for text- and image-to-video, no
    # CLIP image encoder; for i2v the image's latent replaces the first latent frame, so the image
    # conditions the video directly. Both kinds hold the same weights.
    if kind == "t2v":
        return d.WanPipeline(**parts, expand_timesteps=True)
    return d.WanImageToVideoPipeline(**parts, image_encoder=None, image_processor=None, expand_timesteps=True)

"""A tiny random-weight LTX-Video pipeline (`"pipeline": "demo-ltx"`), built locally like the Wan demo.

Sizes follow diffusers' own LTX pipeline tests (tests/pipelines/ltx/): a 4x spatial, 4x temporal VAE, so
any 4-px multiple and 4k+1 frames work. Unlike the Wan demo's hand-wired VAE, this one is random: its
videos are noise patterns that depend on the prompt, seed, image and source, not pictures of them.
"""

from __future__ import annotations

from typing import Any


def build_ltx_demo(d: Any, t: Any, torch: Any, tokenizer: Any, seed: int) -> Any:
    torch.manual_seed(seed)
    text_dim = 32
    text_encoder = t.T5EncoderModel(
        t.T5Config(
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
    torch.manual_seed(seed + 1)
    vae = d.AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    # The random encoder's latents have a std of ~0.28 (measured); normalized as they are, a remix's noise
    # would drown its source. Declaring that spread (as real checkpoints declare theirs) makes a remix at
    # strength s start from a mix in which the source weighs as much as in a real model.
    with torch.no_grad():
        vae.latents_std.fill_(0.28)
    torch.manual_seed(seed + 2)
    transformer = d.LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=text_dim,
    )
    # Left random, the prompt barely shows (a distance of ~2/255 between two prompts' videos, against ~37
    # between two seeds); a stronger cross-attention output brings it to ~13, as the Wan demo does.
    with torch.no_grad():
        for block in transformer.transformer_blocks:
            block.attn2.to_out[0].weight.mul_(16.0)
    scheduler = d.FlowMatchEulerDiscreteScheduler()
    for module in (text_encoder, vae, transformer):
        module.eval()
    return d.LTXConditionPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )

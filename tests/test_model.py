import dataclasses

import pytest
import torch

from lewm.model import LeWM, ModelConfig, count_parameters
from lewm.recipes import RECIPES

TINY = RECIPES["tiny"].train.model


def test_paper_parameter_counts():
    m = LeWM(RECIPES["paper"].train.model)
    parts = {name: count_parameters(getattr(m, name)) for name in
             ("encoder", "projector", "action_encoder", "predictor", "pred_proj")}
    assert parts == {"encoder": 5_501_376, "projector": 792_768, "action_encoder": 156_206,
                     "predictor": 10_791_360, "pred_proj": 792_768}
    assert count_parameters(m) == 18_034_478
    cube = dataclasses.replace(RECIPES["paper"].train.model, action_dim=5)
    assert count_parameters(LeWM(cube)) == 18_034_628


def test_paper_model_shapes_at_224():
    m = LeWM(dataclasses.replace(RECIPES["paper"].train.model, enc_depth=1, pred_depth=1)).eval()
    pixels = torch.randint(0, 256, (2, 3, 224, 224, 3), dtype=torch.uint8)
    with torch.no_grad():
        emb = m.encode(pixels)
    assert emb.shape == (2, 3, 192)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return LeWM(dataclasses.replace(TINY, history=3)).eval()


def test_shapes(model):
    D, blk = TINY.embed_dim, TINY.frameskip * TINY.action_dim
    pixels = torch.randint(0, 256, (4, 4, 32, 32, 3), dtype=torch.uint8)
    actions = torch.randn(4, 4, blk)
    emb = model.encode(pixels)
    assert emb.shape == (4, 4, D)
    pred = model.predict(emb[:, :3], model.embed_actions(actions[:, :3]))
    assert pred.shape == (4, 3, D)
    emb2, pred2 = model(pixels, actions)
    torch.testing.assert_close(emb, emb2)
    torch.testing.assert_close(pred, pred2)
    out = model.rollout(emb[:, :2], actions[:, :1], torch.randn(4, 6, blk))
    assert out.shape == (4, 6, D)


def test_images_of_another_size_are_resized(model):
    pixels = torch.randint(0, 256, (2, 1, 64, 64, 3), dtype=torch.uint8)
    assert model.encode(pixels).shape == (2, 1, TINY.embed_dim)


def test_predictor_is_causal(model):
    emb = torch.randn(2, 3, TINY.embed_dim)
    act = torch.randn(2, 3, TINY.embed_dim)
    # Make the blocks non-trivial (AdaLN-zero starts as the identity).
    for p in model.predictor.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    a = model.predict(emb, act)
    emb2, act2 = emb.clone(), act.clone()
    emb2[:, 2] += 1.0
    act2[:, 2] += 1.0
    b = model.predict(emb2, act2)
    torch.testing.assert_close(a[:, :2], b[:, :2])
    assert not torch.allclose(a[:, 2], b[:, 2])


def test_adaln_zero_blocks_start_as_identity(model):
    x = torch.randn(2, 3, TINY.embed_dim)
    c = torch.randn(2, 3, TINY.embed_dim)
    for block in model.predictor.blocks:
        torch.testing.assert_close(block(x, c), x)


@pytest.mark.parametrize("context", [1, 2, 3])
def test_rollout_matches_step_by_step_prediction(model, context):
    """The rollout's key/value cache and last-token shortcut against the plain predictor run
    on each step's whole window, for a window that grows and then slides."""
    model.eval()
    torch.manual_seed(context)
    for p in model.predictor.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    blk = TINY.frameskip * TINY.action_dim
    ctx = torch.randn(3, context, TINY.embed_dim)
    ctx_act = torch.randn(3, context - 1, blk)
    future = torch.randn(3, 5, blk)
    out = model.rollout(ctx, ctx_act if context > 1 else None, future)
    # By hand: the predictor sees at most `history` (3) frames.
    embs, acts = list(ctx.unbind(1)), list(ctx_act.unbind(1)) + list(future.unbind(1))
    for k in range(5):
        z = torch.stack(embs[-3:], 1)
        a = model.embed_actions(torch.stack(acts[: len(embs)][-3:], 1))
        nxt = model.predict(z, a)[:, -1]
        torch.testing.assert_close(out[:, k], nxt, rtol=1e-4, atol=1e-5)
        embs.append(nxt)


@pytest.mark.parametrize("history", [1, 3])
@pytest.mark.parametrize("context", [1, 2, 3])
def test_the_fast_rollout_is_the_rollout(context, history):
    """lewm.planning.fast's rollout (a key/value cache while the window grows, the last
    token's output alone, modulations computed once, a lone token's softmax skipped) gives
    the definition's predictions, for windows that grow and slide, with 1 and 3 frames of
    history (a history-1 model's rollout is nothing but lone tokens)."""
    from lewm.planning.fast import fast_rollout

    torch.manual_seed(context + 10 * history)
    m = LeWM(dataclasses.replace(TINY, history=history)).eval()
    for p in m.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    blk = TINY.frameskip * TINY.action_dim
    ctx = torch.randn(4, context, TINY.embed_dim)
    ctx_act = torch.randn(4, context - 1, blk) if context > 1 else None
    future = torch.randn(4, 6, blk)
    with torch.no_grad():
        torch.testing.assert_close(fast_rollout(m, ctx, ctx_act, future),
                                   m.rollout(ctx, ctx_act, future), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="context action blocks"):
        fast_rollout(m, ctx, torch.randn(4, context, blk), future)


@pytest.mark.parametrize("channels, patch, blocks, side", [
    ((16, 32), 0, 0, 8), ((32,), 8, 0, 4), ((32, 16), 4, 0, 4), ((16,), 8, 2, 4)])
def test_conv_encoder_stem(channels, patch, blocks, side):
    """A patch stem (p x p at stride p) replaces the first stride-2 stage; the final map, and
    so the flattened features, shrink by the total stride; mixer blocks keep its size."""
    from lewm.model.encoders import ConvEncoder, MixerBlock

    cfg = dataclasses.replace(TINY, image_size=32, conv_channels=channels, conv_patch=patch,
                              conv_blocks=blocks)
    assert cfg.conv_stride == 32 // side
    enc = ConvEncoder(cfg)
    assert sum(isinstance(m, MixerBlock) for m in enc.modules()) == blocks
    assert enc.fc.in_features == channels[-1] * side * side
    assert enc(torch.randn(2, 3, 32, 32)).shape == (2, cfg.enc_dim)


def test_spatial_softmax_keypoints():
    """Each keypoint is the expected (x, y) in [-1, 1] under its map's softmax: a map with one
    dominant cell gives that cell's coordinates; the encoder's linear layer sees 2K values."""
    from lewm.model.encoders import ConvEncoder, SpatialSoftmax

    head = SpatialSoftmax(c_in=1, k=1, side=5)
    with torch.no_grad():
        head.to_maps.weight.fill_(1.0)
        head.to_maps.bias.zero_()
    x = torch.zeros(2, 1, 5, 5)
    x[0, 0, 1, 4] = 50.0  # row 1 (y = -0.5), column 4 (x = 1)
    x[1, 0, 2, 2] = 50.0  # the centre
    torch.testing.assert_close(head(x), torch.tensor([[1.0, -0.5], [0.0, 0.0]]), atol=1e-5,
                               rtol=0)
    assert "grid" not in head.state_dict()  # derived from the size, not a learned value

    cfg = dataclasses.replace(TINY, image_size=32, conv_channels=(16, 32), conv_keypoints=6)
    enc = ConvEncoder(cfg)
    assert enc.fc.in_features == 12
    assert enc(torch.randn(2, 3, 32, 32)).shape == (2, cfg.enc_dim)


def test_bad_model_config():
    from lewm.errors import LewmError

    with pytest.raises(LewmError, match="multiple of"):
        ModelConfig(image_size=100, patch_size=14)
    with pytest.raises(LewmError, match="encoder"):
        ModelConfig(encoder="resnet")
    with pytest.raises(LewmError, match="conv_keypoints must be >= 0"):
        ModelConfig(encoder="conv", image_size=64, conv_keypoints=-1)
    with pytest.raises(LewmError, match="multiple of 24 .*conv_patch 12"):
        ModelConfig(encoder="conv", image_size=64, conv_channels=(16, 16), conv_patch=12)


@pytest.mark.parametrize("make, match", [
    (lambda: torch.rand(2, 1, 32, 32, 3), r"scale \[0, 1\] images by 255"),
    (lambda: torch.randint(0, 255, (2, 1, 3, 32, 32), dtype=torch.uint8), "channels first"),
    (lambda: torch.randint(0, 255, (2, 1, 32, 32, 4), dtype=torch.uint8), "RGBA"),
    (lambda: torch.randint(0, 255, (2, 1, 32, 32, 1), dtype=torch.uint8), "grayscale"),
    (lambda: torch.randint(0, 255, (2, 32, 32, 3), dtype=torch.uint8), "no time axis"),
    (lambda: torch.zeros(0, 1, 32, 32, 3, dtype=torch.uint8), "empty batch"),
    (lambda: torch.full((1, 1, 32, 32, 3), 300.0), r"values in \[0, 255\]"),
    (lambda: [[1, 2, 3]], "got list"),
])
def test_encode_refuses_what_it_would_get_wrong(model, make, match):
    with pytest.raises(ValueError, match=match):
        model.encode(make())


def test_encode_takes_numpy_and_float_0_255_alike(model):
    import numpy as np

    model.eval()
    img = np.random.default_rng(0).integers(0, 256, (2, 1, 32, 32, 3), dtype=np.uint8)
    a = model.encode(torch.from_numpy(img))
    torch.testing.assert_close(model.encode(img), a)
    as_float = torch.from_numpy(img).float()
    torch.testing.assert_close(model.encode(as_float), a)
    assert as_float.max() > 1  # the caller's tensor is not scaled in place


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_load_on_a_missing_device(tmp_path):
    import lewm
    from lewm.errors import LewmError

    with pytest.raises(LewmError, match="CUDA is not available"):
        lewm.load(tmp_path, device="cuda")


@pytest.mark.parametrize("queries,keys,causal", [
    (1, 1, False), (2, 2, False), (3, 3, False), (2, 2, True), (3, 3, True),
    (1, 3, False),  # the last token alone against a window (a rollout's last block, a cache)
])
def test_short_attention_is_scaled_dot_product_attention(queries, keys, causal):
    """The written-out attention that compiled planning uses for a few tokens against torch's
    kernel, which eager code uses."""
    import torch.nn.functional as F

    from lewm.planning.fast import short_attention

    g = torch.Generator().manual_seed(queries * 10 + keys)
    q = torch.randn(4, 2, queries, 8, generator=g)
    k, v = torch.randn(2, 4, 2, keys, 8, generator=g)
    torch.testing.assert_close(short_attention(q, k, v, causal),
                               F.scaled_dot_product_attention(q, k, v, is_causal=causal))


@pytest.mark.parametrize("training", [False, True])
def test_a_lone_token_attends_to_its_value(training):
    """A window of one token (every rollout step of a history-1 model, the first of a rollout
    from one context frame) skips its query and the attention kernel in the fast rollout:
    its one softmax weight is exactly 1. Output, cache and gradient as the definition's
    (attention dropout while training, which may drop that weight, keeps the kernel)."""
    import torch.nn.functional as F

    from lewm.model.predictor import CausalAttention
    from lewm.planning.fast import attend

    torch.manual_seed(0)
    att = CausalAttention(32, 4, 8, dropout=0.0).train(training)
    x = torch.randn(6, 1, 32, requires_grad=True)
    out, (k, v) = attend(att, x, None, False)
    torch.testing.assert_close(out, att(x), rtol=0, atol=1e-6)
    q_, k_, v_ = (t.transpose(1, 2) for t in
                  att.qkv(att.norm(x)).view(6, 1, 3, 4, 8).unbind(2))
    ref = att.out(F.scaled_dot_product_attention(q_, k_, v_).transpose(1, 2).reshape(6, 1, 32))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close((k, v), (k_, v_), rtol=0, atol=1e-6)
    grad, = torch.autograd.grad(out.sum(), x)
    ref_grad, = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)

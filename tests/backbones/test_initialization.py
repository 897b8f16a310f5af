"""Every family starts as the code it follows starts it (drloc_keras.initializers): the
Dense kernels, convolutions, tokens and the DRLoc head, measured on the built weights.

Standard deviations are checked within 3% on at least 12,000 values (sampling error about
0.6%, so 5 of them): Keras' `TruncatedNormal(stddev=0.02)`, which truncates at 2 standard
deviations, gives 0.0176 and fails. A uniform initializer is checked by its bound: every
value inside, the largest near it.
"""

import math

import keras
import numpy as np
import pytest

from drloc_keras import catalog, initializers
from drloc_keras.backbones.cct import CCTBackbone
from drloc_keras.backbones.cvt import CvTBackbone
from drloc_keras.backbones.resnet import ResNet50Backbone
from drloc_keras.backbones.swin import SwinBackbone
from drloc_keras.backbones.t2t import T2TViTBackbone
from drloc_keras.backbones.vit import ViTBackbone
from drloc_keras.head import DRLocHead


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)


def weight(model, prefix, shape, contains=""):
    """The one weight of `model` under the path `prefix` with `shape` (and `contains` in its
    path), as NumPy."""
    found = [w for w in model.weights
             if w.path.startswith(prefix) and contains in w.path and tuple(w.shape) == shape]
    assert len(found) == 1, [(w.path, w.shape) for w in model.weights if w.path.startswith(prefix)]
    return keras.ops.convert_to_numpy(found[0])


def assert_std(values, std, rel=0.03):
    assert values.std() == pytest.approx(std, rel=rel), (values.size, values.std(), std)


def assert_torch_uniform(values, fan_in):
    """PyTorch's default init: uniform on +-1/sqrt(fan_in). Every value is inside the bound,
    and the largest near it: below `bound * 1e-6 ** (1 / n)` with probability 1e-6."""
    bound = 1 / math.sqrt(fan_in)
    assert np.abs(values).max() <= bound + 1e-7
    assert np.abs(values).max() > bound * 1e-6 ** (1 / values.size), (values.size, bound)


def draw(initializer, shape):
    return keras.ops.convert_to_numpy(initializer(shape))


# --- the initializers, against PyTorch ----------------------------------------------------------


def test_the_initializers_draw_what_torch_draws():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    # timm's trunc_normal_ is torch's: a normal truncated at -2 and 2, absolute
    theirs = torch.nn.init.trunc_normal_(torch.empty(256, 512), std=0.02).numpy()
    ours = draw(initializers.trunc_normal(), (256, 512))
    assert ours.std() == pytest.approx(theirs.std(), rel=0.03)
    assert ours.std() == pytest.approx(0.02, rel=0.03)
    # nn.Linear and nn.Conv2d as PyTorch builds them: weight and bias uniform, bound 1/sqrt(fan_in)
    linear = torch.nn.Linear(300, 400)
    conv = torch.nn.Conv2d(16, 64, 3)  # fan_in 16 * 3 * 3
    for values, fan_in in [(linear.weight, 300), (linear.bias, 300), (conv.weight, 144),
                           (conv.bias, 144)]:
        assert_torch_uniform(values.detach().numpy(), fan_in)
    assert_torch_uniform(draw(initializers.torch_uniform(300), (300, 400)), 300)
    assert draw(initializers.torch_uniform(300), (300, 400)).std() == pytest.approx(
        linear.weight.detach().numpy().std(), rel=0.03
    )
    # Keras' VarianceScaling(1/3, fan_in, uniform) is the same bound for a kernel:
    # sqrt(3 * scale / fan_in) = 1/sqrt(fan_in).
    variance_scaling = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")
    assert_torch_uniform(draw(variance_scaling, (3, 3, 16, 64)), 144)
    # kaiming_normal_(fan_out, relu), torchvision's convolutions: untruncated, std sqrt(2/fan_out)
    theirs = torch.nn.init.kaiming_normal_(torch.empty(128, 64, 3, 3), mode="fan_out",
                                           nonlinearity="relu").numpy()
    ours = draw(initializers.kaiming_normal("fan_out"), (3, 3, 64, 128))
    assert ours.std() == pytest.approx(theirs.std(), rel=0.03)
    assert ours.std() == pytest.approx(math.sqrt(2 / (9 * 128)), rel=0.03)
    assert np.mean(np.abs(ours) > 2 * ours.std()) == pytest.approx(0.0455, abs=0.005)
    theirs = torch.nn.init.xavier_normal_(torch.empty(256, 128)).numpy()  # [out, in]
    ours = draw(initializers.xavier_normal(128, 256), (128, 256))
    assert ours.std() == pytest.approx(theirs.std(), rel=0.03)


def test_a_dense_scheme_is_one_of_three():
    with pytest.raises(ValueError, match="initializer"):
        initializers.dense("glorot", 4, 4)
    with pytest.raises(ValueError, match="stddev"):
        initializers.trunc_normal(1.0)


# --- the families --------------------------------------------------------------------------------


def test_swin_dense_layers_are_normal_002_and_the_patch_embedding_pytorchs_default():
    model = SwinBackbone(image_size=32, patch_size=2, embed_dim=64, depths=(2,), num_heads=(2,),
                         window_size=4, num_classes=10)
    assert_std(weight(model, "stage1_block1/fc1", (64, 256)), 0.02)
    assert not weight(model, "stage1_block1/fc1", (256,)).any()
    assert_std(weight(model, "classifier/", (64, 10)), 0.02, rel=0.3)  # 640 values
    assert_torch_uniform(weight(model, "patch_embedding/", (2, 2, 3, 64)), 3 * 2 * 2)
    assert_torch_uniform(weight(model, "patch_embedding/", (64,)), 3 * 2 * 2)


def test_t2t_dense_layers_and_class_token_are_normal_002():
    model = T2TViTBackbone(image_size=32, kernel_sizes=(3, 3, 3), strides=(1, 2, 2),
                           paddings=(1, 1, 1), token_dim=32, embed_dim=64, depth=1, num_heads=2,
                           num_classes=10)
    assert_std(weight(model, "t2t_projection/", (288, 64)), 0.02)
    assert_std(weight(model, "block1/mlp", (64, 192)), 0.02)
    assert_std(weight(model, "t2t_transformer2/qkv", (288, 96)), 0.02)
    assert_std(weight(model, "class_token/", (1, 1, 64)), 0.02, rel=0.3)


def test_cct_dense_layers_are_normal_002_the_tokenizer_kaiming_normal():
    model = CCTBackbone(image_size=32, num_layers=1, num_heads=2, embed_dim=128, num_classes=10)
    assert_std(weight(model, "encoder_layer1/mlp", (128, 256)), 0.02)
    assert_std(weight(model, "positional_embedding/", (1, 256, 128)), 0.2)
    kernel = weight(model, "tokenizer1_conv/", (3, 3, 3, 128))  # 3456 values: within 6%
    assert_std(kernel, math.sqrt(2 / 27), rel=0.06)


def test_cvt_starts_as_pytorchs_defaults():
    model = CvTBackbone(image_size=32, embed_dims=(64,), num_heads=(2,), depths=(1,),
                        patch_sizes=(3,), patch_strides=(2,), drop_path_rates=(0.0,),
                        num_classes=10)
    mlp_kernel = weight(model, "stage1_block1/mlp", (64, 256))
    assert_torch_uniform(mlp_kernel, 64)
    assert_std(mlp_kernel, 1 / math.sqrt(3 * 64))
    assert_torch_uniform(weight(model, "stage1_block1/mlp", (256,)), 64)
    for name in ("q", "k", "v"):  # depthwise: one input channel per group, fan_in 3 * 3
        depthwise = weight(model, "stage1_block1/", (3, 3, 64, 1), contains=f"{name}_projection")
        assert_torch_uniform(depthwise, 9)
    assert_torch_uniform(weight(model, "stage1_embedding/", (3, 3, 3, 64)), 27)
    assert_torch_uniform(weight(model, "stage1_embedding/", (64,)), 27)
    official = CvTBackbone(image_size=32, embed_dims=(64,), num_heads=(2,), depths=(1,),
                           patch_sizes=(3,), patch_strides=(2,), drop_path_rates=(0.0,),
                           initializer="trunc_normal", num_classes=10)
    assert_std(weight(official, "stage1_block1/mlp", (64, 256)), 0.02)


@pytest.mark.parametrize("initializer", ["torch_default", "xavier_normal"])
def test_vit_starts_as_lucidrains_vit(initializer):
    model = ViTBackbone(image_size=32, patch_size=4, embed_dim=64, depth=1, num_heads=2,
                        initializer=initializer, num_classes=10)
    mlp_kernel = weight(model, "block1/mlp", (64, 256))
    patch_kernel = weight(model, "patch_embedding/", (4, 4, 3, 64))  # a Linear from 48 to 64
    if initializer == "torch_default":
        assert_torch_uniform(mlp_kernel, 64)
        assert_std(mlp_kernel, 1 / math.sqrt(3 * 64))
        assert_torch_uniform(patch_kernel, 48)
    else:
        assert_std(mlp_kernel, math.sqrt(2 / (64 + 256)))
        assert_std(patch_kernel, math.sqrt(2 / (48 + 64)), rel=0.1)  # 3072 values
        assert not weight(model, "block1/mlp", (256,)).any()
    # torch.randn: 65 x 64 values of std 1
    assert_std(weight(model, "position_embedding/", (1, 65, 64)), 1.0, rel=0.06)
    assert ViTBackbone.from_config(model.get_config()).initializer == initializer
    with pytest.raises(ValueError, match="initializer"):
        ViTBackbone(image_size=32, patch_size=4, initializer="trunc_normal")


def test_resnet_convolutions_are_kaiming_normal_fan_out_the_classifier_pytorchs_default():
    model = ResNet50Backbone(image_size=16, stem="cifar", width_multiplier=0.25, num_classes=10)
    trunk = model.get_layer("trunk")
    kernel = keras.ops.convert_to_numpy(trunk.get_layer("conv5_block1_2_conv").kernel)
    assert kernel.shape == (3, 3, 128, 128)
    assert_std(kernel, math.sqrt(2 / (9 * 128)))
    assert_torch_uniform(weight(model, "classifier/", (512, 10)), 512)
    assert_torch_uniform(weight(model, "classifier/", (10,)), 512)


@pytest.mark.parametrize("initializer", ["trunc_normal", "torch_default"])
def test_the_drloc_head_starts_as_the_authors(initializer):
    head = DRLocHead(hidden=256, initializer=initializer, mode="ce", seed=0)
    head.build((None, 4, 4, 64))
    first, second = (keras.ops.convert_to_numpy(layer.kernel) for layer in head.trunk[:2])
    if initializer == "trunc_normal":
        assert_std(second, 0.02)
        assert not keras.ops.convert_to_numpy(head.trunk[1].bias).any()
    else:
        assert_torch_uniform(first, 2 * 64)
        assert_torch_uniform(second, 256)
        assert_torch_uniform(keras.ops.convert_to_numpy(head.trunk[0].bias), 2 * 64)
        assert_torch_uniform(keras.ops.convert_to_numpy(head.offset_classifiers[0].kernel), 256)


def test_the_auto_head_initializer_is_the_authors_of_the_family():
    assert catalog.head_initializer("auto", "swin_tiny_32") == "trunc_normal"
    assert catalog.head_initializer("auto", "t2t") == "trunc_normal"
    assert catalog.head_initializer("auto", "cvt_13") == "torch_default"
    assert catalog.head_initializer("auto", "vit") == "torch_default"
    assert catalog.head_initializer("auto", "resnet50_32") == "torch_default"
    assert catalog.head_initializer("glorot", "swin") == "glorot"
    assert set(catalog.AUTHORS_HEAD_INITIALIZER) == set(catalog.FAMILIES)
    assert set(catalog.AUTHORS_HEAD_INITIALIZER.values()) <= set(catalog.HEAD_INITIALIZERS)

"""The initialisations of the PyTorch code that drloc's models follow, as Keras initializers.

Keras' defaults are not PyTorch's, and initializers of the same name differ:
- timm's and torch's `trunc_normal_(w, std=0.02)` truncate at the absolute bounds -2 and 2,
  a hundred standard deviations away: the draw is a plain normal of std 0.02. Keras'
  `TruncatedNormal(stddev=0.02)` truncates at two standard deviations, which leaves a standard
  deviation of 0.88 * 0.02.
- PyTorch's default for `nn.Linear` and `nn.Conv2d` (`kaiming_uniform_` with `a = sqrt(5)`,
  bound `sqrt(6 / (1 + a**2)) / sqrt(fan_in)`) is uniform on +-1/sqrt(fan_in), for the weight
  and the bias alike; Keras starts from Glorot-uniform kernels and zero biases.
- torch's `kaiming_normal_` and `xavier_normal_` are untruncated normals; Keras' `he_normal`
  and `glorot_normal` are truncated at two standard deviations.

Every initializer returned here is a built-in Keras class with plain arguments, so a saved
model's config names only Keras objects and loads without this module. Each call returns a
new initializer: an unseeded Keras initializer shared by two layers would draw the same values
for both.
"""

import math

import keras

# How the Dense layers (PyTorch's `nn.Linear`) of a model are initialised; see `dense`.
DENSE_SCHEMES = ("trunc_normal", "torch_default", "xavier_normal")


def trunc_normal(stddev=0.02):
    """timm's `trunc_normal_(w, std=stddev)`: a normal of std `stddev`, truncated at -2 and 2.

    For std 0.02 the bounds are 100 standard deviations away and for CCT's 0.2 still 10
    (probability 1.5e-23): no draw reaches them, so this is `RandomNormal(stddev)`.
    """
    if not 0 < stddev <= 0.2:
        raise ValueError(
            "`stddev` must be in (0, 0.2], where the bounds -2 and 2 are at least 10 standard "
            f"deviations away and never reached. Found stddev={stddev!r}"
        )
    return keras.initializers.RandomNormal(stddev=stddev)


def torch_uniform(fan_in):
    """PyTorch's default initialisation of an `nn.Linear` or `nn.Conv2d` weight or bias:
    uniform on +-1/sqrt(fan_in), `fan_in` the inputs of one output (in_features, or
    in_channels / groups times the kernel area: 9 for a 3x3 depthwise convolution)."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def kaiming_normal(mode="fan_in"):
    """torch's `kaiming_normal_(w, mode=mode)` for a ReLU (its default, leaky_relu with slope
    0, has the same gain): an untruncated normal of std sqrt(2 / fan), Keras' fans of a
    convolution kernel being PyTorch's."""
    return keras.initializers.VarianceScaling(2.0, mode, "untruncated_normal")


def xavier_normal(fan_in, fan_out):
    """torch's `xavier_normal_`: an untruncated normal of std sqrt(2 / (fan_in + fan_out))."""
    return keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (fan_in + fan_out)))


def check_scheme(scheme, name="initializer"):
    """Raises a ValueError naming `name` unless `scheme` is one of `DENSE_SCHEMES`."""
    if scheme not in DENSE_SCHEMES:
        raise ValueError(f"`{name}` must be one of {DENSE_SCHEMES}. Found {name}={scheme!r}")


def dense(scheme, fan_in, fan_out):
    """`{"kernel_initializer", "bias_initializer"}` of a Dense layer from `fan_in` to
    `fan_out` features, initialised as `scheme` says:

    - "trunc_normal": timm's `_init_weights` (Swin, T2T-ViT, CCT): `trunc_normal` std 0.02,
      zero bias.
    - "torch_default": an `nn.Linear` no code re-initialises (lucidrains' ViT and CvT, which
      the DRLoc authors used): `torch_uniform(fan_in)` for the weight and the bias.
    - "xavier_normal": `xavier_normal_` and zero bias (Lee et al.'s ViT for small datasets).
    """
    check_scheme(scheme)
    if scheme == "trunc_normal":
        return {"kernel_initializer": trunc_normal(), "bias_initializer": "zeros"}
    if scheme == "xavier_normal":
        return {"kernel_initializer": xavier_normal(fan_in, fan_out), "bias_initializer": "zeros"}
    return {"kernel_initializer": torch_uniform(fan_in), "bias_initializer": torch_uniform(fan_in)}

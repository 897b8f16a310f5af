"""drloc_keras: DRLoc for Keras 3 (TensorFlow, JAX and PyTorch backends)."""

from drloc_keras import backbones, losses, schedules
from drloc_keras.layers import DRLocHead
from drloc_keras.model import DRLocModel, split_backbone_output

__version__ = "0.1.0"

__all__ = ["backbones", "DRLocHead", "DRLocModel", "losses", "schedules", "split_backbone_output"]

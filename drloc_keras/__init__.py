"""drloc_keras: DRLoc for Keras 3 (TensorFlow, JAX and PyTorch backends)."""

__version__ = "0.1.0"

"""tunelab's MLX bridge: LoRA fine-tuning and generation served to the tunelab kernel over ZeroMQ.

Importing the package imports nothing heavy: `python -m tunelab_bridge` must be able to choose
the BLAS library (and load it) before MLX is loaded.
"""

__version__ = "0.1.0"

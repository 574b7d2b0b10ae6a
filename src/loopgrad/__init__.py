"""loopgrad: multi-layer perceptrons trained with explicit, compiled index loops."""
__version__ = "0.1.0"

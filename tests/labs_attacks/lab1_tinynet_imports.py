"""Hands lab 1 to tinynet: its own Linear and ReLU, imported under the stub's names."""
from tinynet import Linear, ReLU  # noqa: F401

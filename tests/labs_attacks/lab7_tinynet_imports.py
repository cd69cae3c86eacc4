"""Hands lab 7 to tinynet: its own Conv2d and MaxPool2d, imported under the stub's names."""
from tinynet import Conv2d, MaxPool2d  # noqa: F401

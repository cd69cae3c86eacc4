"""Subclasses tinynet's Conv2d and MaxPool2d and keeps their forward and backward."""
import tinynet as tn


class Conv2d(tn.Conv2d):
    pass


class MaxPool2d(tn.layers.MaxPool2d):
    pass

"""Lab 5 reference: a layer of tinynet's own (Linear: it has parameters, so every item is exercised).

``make labs-selfcheck`` grades this file: every item must pass. tests/test_labs.py also grades
tinynet's other layers through this lab.
"""

import tinynet as tn


def build(rng):
    return tn.Linear(6, 4, rng=rng)

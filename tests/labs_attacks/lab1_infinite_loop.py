"""Hangs at import: an infinite loop."""
while True:
    pass

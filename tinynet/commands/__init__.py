"""One module per ``tinynet`` command; the CLI finds them here."""

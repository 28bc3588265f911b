"""Image and tag features."""

"""Pieces of `phototag serve`: request guards, the batched tagger, API schemas, the page.

`phototag.app.server` puts them together into the FastAPI application.
"""

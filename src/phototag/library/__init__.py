"""The photo-library workflow: annotation runs over photo files, learning a user's own
vocabulary from their keywords, review feedback, resumable run journals and HTML reports.

Keywords are read from and written to the photos by `phototag.metadata`.
"""

"""Ingest: from a stored raw message to a case, a comment, or a held or filtered message."""

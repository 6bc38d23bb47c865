"""Readers for every input format; each returns a ``Volume`` (HU, x/y/z index order, RAS affine)."""

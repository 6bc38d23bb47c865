"""Privacy checks of what a run shares: the identifier scan of its output folders (``phi_scan``)."""

from ctvlp.privacy.phi_scan import find_identifiers, output_folders

__all__ = ["find_identifiers", "output_folders"]

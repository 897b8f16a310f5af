"""Backbones that expose their token grid for DRLoc."""

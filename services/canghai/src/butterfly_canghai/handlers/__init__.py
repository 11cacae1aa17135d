"""Apps of canghai: ``canghai`` answers the original canghai API names."""

"""Eyes of a fold (with the atlas label mapping), their coordinates, and the patches and points
training draws from them."""

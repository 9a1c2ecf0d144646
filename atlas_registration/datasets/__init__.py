"""Eyes from the retina_data tree, their coordinates, and the patches training draws from them."""

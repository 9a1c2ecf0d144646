"""Supporting modules of the atlas tree: median atlas, label merging, Jacobians, metrics, figures."""

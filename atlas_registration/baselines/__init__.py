"""Classical registration baselines (SimpleITK) in the project's ``[H, W, D]`` convention."""

"""Data: image folders to training batches (pipeline), the built-in datasets (datasets), the original
frames fetched (download), and grids written as PNG files (images)."""

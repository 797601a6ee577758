"""Data: image folders and built-in datasets in, the tf.data pipeline, grids and PNG files out."""

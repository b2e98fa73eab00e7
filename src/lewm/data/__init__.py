"""Episode collection into HDF5 files, and the training clips read from them."""

"""Reading images, label conventions, isotropic crops, boundary weights and the DataModule."""

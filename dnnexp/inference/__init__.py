"""Using a trained run: predictions on new files, export, ensembles (after `dnnexp train`)."""
